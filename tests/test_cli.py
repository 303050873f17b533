"""The command line: bad input exits 2 with one line naming the field; good input writes a run folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, tiny_recipe


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "compression", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


def write(tmp_path, data, name="recipe.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_help_documents_the_commands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("run", "train", "check", "examples"):
        assert command in out.stdout


@pytest.mark.parametrize("change, field", [
    ({"steps": [{"method": "sharpen"}]}, "steps[0].method"),
    ({"steps": [{"method": "prune", "final_sparsity": 1.5}]}, "steps[0].final_sparsity"),
    ({"steps": [{"method": "cluster", "number_of_clusters": 0}]}, "steps[0].number_of_clusters"),
    ({"dataset": None}, "dataset"),
])
def test_bad_recipes_exit_2_with_one_line(tmp_path, tiny_npz, change, field):
    data = tiny_recipe(tiny_npz)
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None}
    out = cli("run", write(tmp_path, data), "--out", tmp_path / "out")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), out.stderr
    assert not (tmp_path / "out").exists()


def test_missing_data_and_unreadable_models_exit_2(tmp_path, tiny_npz):
    out = cli("run", write(tmp_path, tiny_recipe(tmp_path / "absent.npz")), "--out", tmp_path / "out")
    assert out.returncode == 2 and "absent.npz does not exist" in out.stderr
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a model")
    recipe = tiny_recipe(tiny_npz, baseline={"path": str(broken)})
    out = cli("run", write(tmp_path, recipe), "--out", tmp_path / "out")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == "error: broken.keras is not a valid .keras file (not a zip archive); is it corrupt?"
    assert not (tmp_path / "out").exists()
    out = cli("run", tmp_path / "no-such-recipe.json", "--out", tmp_path / "out")
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_check_explains_the_plan():
    out = cli("check", "examples/prune_cluster_qat.json")
    assert out.returncode == 0
    assert "PCQAT: keeps 90% sparsity and 16 clusters" in out.stdout


def test_train_writes_a_measured_baseline(tmp_path, tiny_npz):
    out = cli("train", "--dataset", tiny_npz, "--arch", "lenet_300_100", "--epochs", 2, "--batch-size", 32,
              "--latency-runs", 2, "--out", tmp_path / "base", "--quiet")
    assert out.returncode == 0, out.stderr
    run = Path(tmp_path / "base")
    report = json.loads((run / "report.json").read_text())
    assert report["stages"] == [] and report["baseline"]["source"] == "trained"
    assert report["final"]["export"] == "float32"
    assert (run / "baseline.keras").is_file() and (run / "model.tflite").is_file()
    assert "baseline: accuracy" in out.stdout


def test_methods_lists_every_registered_method_and_exporter_from_the_registry():
    out = cli("methods", "--json")
    assert out.returncode == 0, out.stderr
    catalogue = json.loads(out.stdout)
    by_name = {m["name"]: m for m in catalogue["methods"]}
    assert list(by_name) == ["prune", "lottery", "cluster", "quantize", "pq"]
    final = by_name["prune"]["params"]["final_sparsity"]
    assert final["default"] == 0.8 and final["min"] == 0 and final["max"] == 1 and final["max_open"]
    assert final["kind"] == "per_layer_float" and final["help"]
    clusters = by_name["cluster"]["params"]["number_of_clusters"]
    assert (clusters["min"], clusters["max"], clusters["unit"]) == (2, 256, "clusters")
    assert by_name["quantize"]["variants"].keys() == {"qat", "pqat", "cqat", "pcqat", "qat_lowbit", "quant_noise",
                                                      "rounded"}
    assert [e["file_name"] for e in catalogue["exporters"]] == ["model.tflite", "model_int4.tflite", "model.dc"]
    text = cli("methods")
    assert "number_of_clusters (per_layer_int clusters, default 16 in [2, 256])" in text.stdout


def test_the_run_summary_shows_a_missing_figure_as_a_question_mark():
    from compression.cli.main import _summary

    text = _summary({"baseline": {"metrics": {"accuracy": 0.9}}, "stages": [{"method": "prune"}, "x"],
                     "final": {"export": "int8", "accuracy": 0.8}})
    assert "baseline: accuracy 0.9000, ? parameters" in text and "prune (None): accuracy ?" in text
    assert "exported int8: accuracy 0.8000, sparsity ?" in text
    assert _summary({}).startswith("baseline: accuracy ?")
