"""The boundaries of the package, checked structurally: no hand-kept list of modules.

* Everything outside ``compression.engine`` (and the method and exporter registries, which
  the dashboard reads) imports without loading TensorFlow, tf_keras or tfmot.
* ``compression`` never imports streamlit.
* Only ``compression/jobs/queue.py`` imports huey.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "keras")


def _modules() -> list[str]:
    out = []
    for path in sorted((ROOT / "compression").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__":
            continue
        out.append(".".join(parts))
    return out


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_every_module_outside_the_engine_imports_without_tensorflow():
    outside = [m for m in _modules() if not m.startswith("compression.engine")]
    # The registries are read by the recipe validator and the Pipeline page: they must stay light too.
    light = outside + ["compression.engine.methods", "compression.engine.exporters"]
    assert "compression.jobs.worker" in light and "compression.studio.charts" in light  # the walk found them
    code = f"""
import importlib, json, sys
sys.path.insert(0, {str(ROOT)!r})
import compression
bad = {{}}
for name in {light!r}:
    importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    if loaded:
        bad[name] = loaded[:3]
        break
from compression.engine import exporters, methods
methods.names(); exporters.all_exporters()  # discovering every method and exporter module
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
if loaded and not bad:
    bad["the registries"] = loaded[:3]
print(json.dumps(bad))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}, "TensorFlow loaded by: " + out.stdout


def test_the_library_never_imports_streamlit():
    for path in (ROOT / "compression").rglob("*.py"):
        assert not any(n.split(".")[0] == "streamlit" for n in _imports(path)), f"{path} imports streamlit"


def test_only_the_engine_names_tensorflow_and_only_the_queue_names_huey():
    for path in (ROOT / "compression").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        names = {n.split(".")[0] for n in _imports(path)}
        if not rel.startswith("compression/engine/"):
            assert not names & set(HEAVY) - {"keras"}, f"{rel} imports {names & set(HEAVY)}"
        if rel != "compression/jobs/queue.py":
            assert "huey" not in names, f"{rel} imports huey"
    for path in [ROOT / "app.py", *(ROOT / "views").glob("*.py")]:
        assert not {n.split(".")[0] for n in _imports(path)} & set(HEAVY), f"{path.name} imports TensorFlow"
