"""The protocol holds for extensions it has never seen: two throwaway plug-ins, each one module in
tests/plugins/, go end to end through recipe validation, the planner, the pipeline, report.json,
the command line, Results and Compare, with no other file of the studio changed.

* ``lowrank``: a method that renames layers (fc1 becomes fc1_u and fc1_v);
* ``gz``: an exporter with its own size figure, its own per-layer accounting and a rule for when it
  applies (int8 exports only).
"""

import gzip
import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

sys.path.insert(0, str(Path(__file__).parent))

from compression.errors import RecipeError  # noqa: E402
from compression.recipe import Recipe  # noqa: E402
from compression.recipe.ordering import plan  # noqa: E402
from conftest import tiny_recipe  # noqa: E402
from plugins import gzip_exporter, lowrank  # noqa: E402
from synthetic import page_errors, write_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRUNE = {"method": "prune", "initial_sparsity": 0.3, "final_sparsity": 0.6, "epochs": 2, "batch_size": 32}
LOWRANK = {"method": "lowrank", "rank": 8, "layers": {"names": ["fc1"]}, "epochs": 1, "batch_size": 32}


@pytest.fixture(scope="module")
def plugged():
    lowrank.register()
    gzip_exporter.register()
    yield
    lowrank.unregister()
    gzip_exporter.unregister()


@pytest.fixture(scope="module")
def workspace(plugged, tiny_npz, tmp_path_factory):
    """A workspace holding one real run of both plug-ins (int8) and one float32 run (no gz file)."""
    from compression.engine.pipeline import run_recipe

    home = tmp_path_factory.mktemp("home")
    runs = {}
    for job_id, name, export in [("20260101-000000-0000a1", "lowrank-prune-int8", "int8_dynamic"),
                                 ("20260101-000100-0000a2", "lowrank-float", "float32")]:
        recipe = Recipe.from_dict(tiny_recipe(tiny_npz, [LOWRANK, PRUNE], name=name, export=export))
        folder = home / "runs" / job_id
        write_job(folder, job_id, recipe.to_dict(), "succeeded", stage="export", message="done")
        runs[name] = (folder, run_recipe(recipe, folder))
    return home, runs


def test_the_plugins_are_validated_and_planned_from_their_declarations(plugged, tiny_npz):
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(tiny_recipe(tiny_npz, [{"method": "lowrank", "rank": 0}]))
    assert str(err.value) == "steps[0].rank: 0 is below the minimum 1 (allowed 1..4096)"
    with pytest.raises(RecipeError, match="lowrank after prune is refused: factorising a pruned layer"):
        Recipe.from_dict(tiny_recipe(tiny_npz, [PRUNE, LOWRANK]))
    recipe = Recipe.from_dict(tiny_recipe(tiny_npz, [LOWRANK, PRUNE]))
    assert [(p.method, p.variant) for p in plan(recipe)] == [("lowrank", "lowrank"), ("prune", "prune")]
    assert plan(recipe)[0].description == "Factorising Dense kernels to rank 8"


def test_a_method_that_renames_layers_is_measured_on_its_new_layers(workspace):
    _home, runs = workspace
    folder, report = runs["lowrank-prune-int8"]
    names = lambda m: [row["name"] for row in m["layers"]]  # noqa: E731
    assert names(report["baseline"]["metrics"]) == ["fc1", "fc2", "output"]
    assert names(report["stages"][0]["metrics"]) == ["fc1_u", "fc1_v", "fc2", "output"]
    assert names(report["stages"][1]["metrics"]) == names(report["final"]) == ["fc1_u", "fc1_v", "fc2", "output"]
    assert report["stages"][0]["notes"] == ["fc1 became fc1_u and fc1_v"]
    assert report["stages"][0]["stats"]["rank"]["achieved"] == 8
    assert report["final"]["sparsity"] == pytest.approx(0.6, abs=0.02)  # pruning after it, read from the file
    assert report["undone"] == []
    weights = json.loads((folder / "weights.json").read_text())
    assert [e["name"] for e in weights["stages"][-1]["layers"]] == ["fc1_u", "fc1_v", "fc2", "output"]
    assert [t["layer"] for t in report["final"]["dc"]["tensors"]] == ["fc1_u", "fc1_v", "fc2", "output"]


def test_an_exporter_with_its_own_accounting_writes_and_measures_its_file_where_it_applies(workspace):
    _home, runs = workspace
    folder, report = runs["lowrank-prune-int8"]
    assert report["artifacts"]["gz"] == "model.tflite.gz"
    blob = (folder / "model.tflite.gz").read_bytes()
    assert gzip.decompress(blob) == (folder / "model.tflite").read_bytes()
    assert report["final"]["gz_bytes"] == len(blob)
    acc = report["final"]["gz"]
    assert [r["layer"] for r in acc["tensors"]] == ["fc1_u", "fc1_v", "fc2", "output"]
    assert acc["rest_bytes"] + sum(r["bytes"] for r in acc["tensors"]) == len(blob)
    folder, report = runs["lowrank-float"]
    assert "gz" not in report["artifacts"] and "gz_bytes" not in report["final"]
    assert not (folder / "model.tflite.gz").exists()


def test_the_command_line_lists_and_summarises_the_plugins(workspace, capsys):
    from compression.cli.main import _summary, main

    assert main(["methods", "--json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    assert "lowrank" in [m["name"] for m in catalogue["methods"]]
    assert "gz" in [e["key"] for e in catalogue["exporters"]]
    _home, runs = workspace
    summary = _summary(runs["lowrank-prune-int8"][1])
    assert "TFLite gzip" in summary and "lowrank (lowrank)" in summary


def _app(page: str, home: Path, monkeypatch, **query) -> AppTest:
    monkeypatch.setenv("COMPRESSION_HOME", str(home))
    monkeypatch.setenv("COMPRESSION_EMBEDDED_WORKER", "0")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(page)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not page_errors(at), page_errors(at)
    return at


def test_results_and_compare_show_the_plugins_with_no_page_changed(workspace, monkeypatch):
    home, _runs = workspace
    at = _app("views/results.py", home, monkeypatch, run="20260101-000000-0000a1")
    stage_table, stage_sizes = [df.value for df in at.dataframe if "stage" in df.value.columns][:2]
    assert "gz" in stage_sizes.columns and stage_sizes["gz"].iloc[-1] != "–"  # the size half of the stage table
    assert "Where the gzip bytes go: model.tflite.gz" in [s.value for s in at.subheader]
    accounting = next(df.value for df in at.dataframe if "layer" in df.value.columns and "weights" in df.value.columns
                      and "ratio" in df.value.columns and len(df.value) == 5)
    assert list(accounting["layer"])[:4] == ["fc1_u", "fc1_v", "fc2", "output"]
    assert any(b.label.startswith("model.tflite.gz") for b in at.get("download_button"))
    assert "1 lowrank" in " ".join(map(str, stage_table["stage"]))

    at = _app("views/compare.py", home, monkeypatch, runs="20260101-000000-0000a1,20260101-000100-0000a2")
    table = next(df.value for df in at.dataframe if "run" in df.value.columns and "export" in df.value.columns)
    assert "gz" in table.columns
    assert sorted(table["gz"].tolist())[-1] == "–" and table["gz"].tolist().count("–") == 1  # float32: no gzip
