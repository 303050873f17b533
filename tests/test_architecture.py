"""The layers of the package, checked structurally on the whole import graph.

* Every import goes down (or within) the layer order in ``compression.LAYERS``: the test walks
  every module's imports, function-level ones included; no hand-kept list of modules.
* Everything outside ``compression.engine`` imports without loading TensorFlow, tf_keras or tfmot.
* ``compression`` never imports streamlit; only ``compression/jobs/queue.py`` imports huey; the
  pages import neither the engine nor the command line.
* Every declared method and exporter has its executing half in the engine, and every executing
  half a declaration.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import compression

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "keras")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, str]:
    return {_module_name(p): p.read_text() for p in sorted((ROOT / "compression").rglob("*.py"))}


def imports_of(source: str, modules: set[str]) -> set[str]:
    """Every compression module a source imports, anywhere in it (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m.split(".")[0] == "compression"}


def layer_of(module: str) -> int:
    best, found = -1, None
    for i, prefixes in enumerate(compression.LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    if found is None:
        raise AssertionError(f"{module} belongs to no layer of compression.LAYERS")
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """'a imports b' for every import that goes up the layer order."""
    modules = set(sources)
    out = []
    for name, source in sources.items():
        mine = layer_of(name)
        for target in sorted(imports_of(source, modules)):
            if layer_of(target) > mine:
                out.append(f"{name} (layer {mine}) imports {target} (layer {layer_of(target)})")
    return out


def test_every_import_goes_down_the_layer_order():
    sources = _sources()
    assert {"compression.recipe.ordering", "compression.engine.pipeline", "compression.studio.charts"} <= set(sources)
    assert violations(sources) == []


@pytest.mark.parametrize("module, line", [
    ("compression.recipe.ordering", "from compression.engine import models"),
    ("compression.inputs.data", "def f():\n    from compression.engine.download import keras_load_data"),
    ("compression.store.runs", "import compression.jobs.records"),
    ("compression.tflite.kernels", "from compression import dc"),
])
def test_the_layer_check_fails_on_an_upward_import(module, line):
    sources = _sources()
    sources[module] = sources[module] + "\n" + line + "\n"
    found = violations(sources)
    assert len(found) == 1 and found[0].startswith(module), found


def test_every_module_outside_the_engine_imports_without_tensorflow():
    outside = [m for m in _sources() if not m.startswith("compression.engine")]
    # the executors' registries are read by the pipeline before any method runs: they stay light too
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
from compression.recipe import exporters, methods
from compression.engine import exporters as writers, methods as executors
methods.names(); exporters.all_exporters(); executors.names(); writers.keys()  # discover every plug-in module
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
if loaded and not bad:
    bad["the registries"] = loaded[:3]
print(json.dumps(bad))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}, "TensorFlow loaded by: " + out.stdout


def _names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_library_never_imports_streamlit():
    for path in (ROOT / "compression").rglob("*.py"):
        assert not any(n.split(".")[0] == "streamlit" for n in _names(path)), f"{path} imports streamlit"


def test_only_the_engine_names_tensorflow_and_only_the_queue_names_huey():
    for path in (ROOT / "compression").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        names = {n.split(".")[0] for n in _names(path)}
        if not rel.startswith("compression/engine/"):
            assert not names & set(HEAVY) - {"keras"}, f"{rel} imports {names & set(HEAVY)}"
        if rel != "compression/jobs/queue.py":
            assert "huey" not in names, f"{rel} imports huey"
    for path in [ROOT / "app.py", *(ROOT / "views").glob("*.py")]:
        names = _names(path)
        assert not {n.split(".")[0] for n in names} & set(HEAVY), f"{path.name} imports TensorFlow"
        assert not [n for n in names if n.startswith(("compression.engine", "compression.cli"))], \
            f"{path.name} imports the engine or the command line"


def test_every_declaration_has_its_executing_half_and_back():
    from compression.engine import exporters as writers
    from compression.engine import methods as executors
    from compression.recipe import exporters, methods

    assert set(methods.names()) == set(executors.names())
    assert {e.key for e in exporters.all_exporters()} == set(writers.keys())


def test_the_dataset_loaders_and_the_dataset_choices_name_the_same_sets():
    from compression.inputs import data
    from compression.recipe.choices import DatasetName, options

    assert set(data.LOADERS) == set(options(DatasetName))
