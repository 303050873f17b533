"""Whole recipes on tiny data: preserving variants keep earlier work into the TFLite file,
unsafe orders show what they undid, and every figure is read back from the artifacts."""

import hashlib
import io
import json

import numpy as np
import pytest

from compression.engine import metrics
from compression.errors import Cancelled, DatasetError, RecipeError
from compression.engine.pipeline import run_recipe
from compression.recipe import Recipe
from conftest import tiny_recipe
from independent import distinct_per_channel, litert_kernels

PRUNE = {"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.8, "epochs": 2, "batch_size": 32}
CLUSTER = {"method": "cluster", "number_of_clusters": 8, "epochs": 1, "batch_size": 32, "learning_rate": 1e-4}
QUANTIZE = {"method": "quantize", "epochs": 1, "batch_size": 64}


def max_unique(m):
    return max(row["unique_values"] for row in m["layers"])


@pytest.fixture(scope="module")
def pcqat_run(tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("pcqat")
    events = []
    recipe = Recipe.from_dict(tiny_recipe(tiny_npz, [PRUNE, CLUSTER, QUANTIZE], export="int8_dynamic"))
    report = run_recipe(recipe, out, progress=events.append)
    return out, report, events


def test_prune_cluster_qat_runs_as_pcqat_and_keeps_everything(pcqat_run):
    out, report, _ = pcqat_run
    assert [s["variant"] for s in report["stages"]] == ["prune", "sparsity_preserving_cluster", "pcqat"]
    for stage in report["stages"]:
        assert stage["metrics"]["sparsity"] == pytest.approx(0.8, abs=0.01), stage["method"]
    assert max_unique(report["stages"][1]["metrics"]) <= 8
    assert max_unique(report["stages"][2]["metrics"]) <= 8
    final = report["final"]
    assert final["export"] == "int8_dynamic"
    assert final["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert max_unique(final) <= 8
    assert report["undone"] == []


def test_final_figures_agree_with_what_litert_reads_from_the_file(pcqat_run):
    """Checked against LiteRT's own op and tensor details, not against the studio's reader."""
    out, report, _ = pcqat_run
    found = litert_kernels((out / "model.tflite").read_bytes())
    assert [k["op"] for k in found] == ["FULLY_CONNECTED"] * 3  # fc1, fc2, output in graph order
    for k, row in zip(found, report["final"]["layers"]):
        assert k["dtype"] == np.int8  # quantized in the file
        zeros = float(np.mean(k["values"] == 0))
        # every zero in the file is either pruned or rounded to zero by the quantizer, never both
        assert row["sparsity"] + row["zeros_rounded"] == pytest.approx(zeros, abs=1e-9)
        assert row["sparsity"] == pytest.approx(0.8, abs=0.01) and row["revived"] == 0
        assert row["unique_values"] == np.unique(k["values"]).size  # distinct values in the whole layer
        per_channel = k["per_channel_axis"] is not None
        assert row["unique_values_per_channel"] == (distinct_per_channel(k["values"], k["per_channel_axis"])
                                                    if per_channel else None)
    assert report["final"]["tflite_bytes"] == (out / "model.tflite").stat().st_size
    # int8 weights: about a quarter of the float32 baseline file
    assert report["final"]["tflite_bytes"] < 0.4 * report["baseline"]["metrics"]["tflite_bytes"]
    assert report["final"]["tflite_zip_bytes"] < report["baseline"]["metrics"]["tflite_zip_bytes"] / 5


def test_report_has_the_agreed_shape(pcqat_run):
    out, report, _ = pcqat_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["final"] == json.loads(json.dumps(report["final"]))
    for key in ("recipe", "baseline", "stages", "final", "artifacts", "dataset", "undone"):
        assert key in on_disk
    m = on_disk["baseline"]["metrics"]
    for key in ("accuracy", "params_total", "params_nonzero", "sparsity", "layers", "keras_zip_bytes",
                "tflite_bytes", "tflite_zip_bytes", "latency_ms", "per_class_recall"):
        assert key in m, key
    assert m["params_total"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert len(m["per_class_recall"]) == 10 and 0 <= min(m["per_class_recall"]) <= 1
    assert m["accuracy"] > 0.5  # the tiny data is learnable
    assert {s["method"] for s in on_disk["stages"]} == {"prune", "cluster", "quantize"}
    assert all(s["wall_s"] > 0 for s in on_disk["stages"])
    for name in on_disk["artifacts"].values():
        assert (out / name).is_file(), name
    assert not list(out.glob(".partial*"))


def test_dashboard_files_hold_histograms_and_predictions(pcqat_run, tiny_npz):
    out, report, _ = pcqat_run
    weights = json.loads((out / "weights.json").read_text())
    assert [s["stage"] for s in weights["stages"]] == ["baseline", "prune", "cluster", "quantize", "final"]
    base_fc1 = weights["stages"][0]["layers"][0]
    assert len(base_fc1["counts"]) == 60 and len(base_fc1["bin_edges"]) == 61
    assert base_fc1["values"] is None  # thousands of distinct values are not listed
    clustered = weights["stages"][2]["layers"][0]
    assert clustered["zeros"] == pytest.approx(0.8 * clustered["total"], rel=0.02)
    assert sum(clustered["counts"]) + clustered["zeros"] == clustered["total"]
    assert 1 < len(clustered["values"]) <= 8 and sum(clustered["value_counts"]) == clustered["total"]
    with np.load(out / "predictions.npz", allow_pickle=False) as p:
        y, base, final = p["y_true"], p["baseline_pred"], p["final_pred"]
        idx, images = p["changed_index"], p["changed_images"]
    assert len(y) == len(base) == len(final) == 100
    assert float(np.mean(final == y)) == pytest.approx(report["final"]["accuracy"])
    # The gallery: every sample whose prediction changed (up to 64), forgotten ones first
    # (the baseline was right, the compressed file is wrong), each in test-split order.
    changed = np.flatnonzero(base != final)
    forgotten = [i for i in changed if base[i] == y[i]]
    others = [i for i in changed if base[i] != y[i]]
    assert list(idx) == (forgotten + others)[:64]
    from compression.inputs import data

    ds = data.load_npz(tiny_npz)
    assert images.dtype == np.uint8 and images.shape == (len(idx), 8, 8)
    np.testing.assert_array_equal(images, ds.display_images(idx))


def test_stages_report_target_against_achieved_and_their_notes(pcqat_run):
    out, report, _ = pcqat_run
    prune, cluster, qat = report["stages"]
    sparsity = prune["stats"]["final_sparsity"]
    assert sparsity["target"] == 0.8 and sparsity["achieved"] == pytest.approx(0.8, abs=0.01)
    assert set(sparsity["per_layer"]) == {"fc1", "fc2", "output"}
    # 270 samples / 32 = 9 steps per epoch, 18 in all: frequency 100 had to be lowered, and it says so
    assert any("frequency lowered from 100" in n for n in prune["notes"])
    assert cluster["stats"]["number_of_clusters"]["achieved"] <= 8
    assert qat["stats"]["variant"]["achieved"] == "pcqat"


def test_keras_size_is_the_file_the_user_downloads(pcqat_run):
    import zipfile
    import io

    out, report, _ = pcqat_run
    # the last stage's model is model.keras: its measured size is that file's
    last = report["stages"][-1]["metrics"]
    data = (out / "model.keras").read_bytes()
    assert last["keras_bytes"] == len(data)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.keras", data)
    assert last["keras_zip_bytes"] == len(buf.getvalue())


def test_the_baseline_keeps_its_untrained_weights_for_later_methods(pcqat_run):
    out, report, _ = pcqat_run
    assert report["artifacts"]["baseline_init"] == "baseline_init.npz"
    with np.load(out / "baseline_init.npz") as z:
        first = z["w0"]
    assert first.shape == (64, 300)
    base_fc1 = json.loads((out / "weights.json").read_text())["stages"][0]["layers"][0]
    assert not (first.min() == base_fc1["min"] and first.max() == base_fc1["max"])


def test_the_input_contract_travels_with_the_report(pcqat_run):
    _, report, _ = pcqat_run
    contract = report["input"]
    assert contract["shape"] == [1, 8, 8] and contract["dtype"] == "float32"
    assert len(contract["class_names"]) == 10 and "class" in contract["output"]


def test_a_layer_the_file_reader_misses_fails_the_measurement_by_name(pcqat_run, tiny_npz, monkeypatch):
    from compression.inputs import data
    from compression.recipe.choices import ExportMode
    from compression.engine import measure

    out, report, _ = pcqat_run
    real = metrics.read_weights

    def without_fc2(tfl, names):
        found = real(tfl, names)
        found.layers = [lw for lw in found.layers if lw.name != "fc2"]
        return found

    monkeypatch.setattr(metrics, "read_weights", without_fc2)
    with pytest.raises(measure.MeasurementError, match="layer fc2 in the exported TFLite file"):
        measure.measure_file((out / "model.tflite").read_bytes(), data.load_npz(tiny_npz), 1,
                             ["fc1", "fc2", "output"], ExportMode.INT8_DYNAMIC)


def test_progress_goes_from_start_to_done_through_every_stage(pcqat_run):
    _, _, events = pcqat_run
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {e["stage"] for e in events} >= {"baseline", "prune", "cluster", "quantize", "export"}
    batch = next(e for e in events if e["stage"] == "prune" and e["batch"])
    assert batch["epochs"] == 2 and batch["batches"] == 9 and batch["loss"] is not None


def test_the_exported_file_runs_in_litert(pcqat_run, tiny_npz):
    from ai_edge_litert.interpreter import Interpreter

    out, report, _ = pcqat_run
    interp = Interpreter(model_path=str(out / "model.tflite"))
    interp.allocate_tensors()
    x = np.load(tiny_npz)["x_test"][:1].astype(np.float32)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    assert interp.get_tensor(interp.get_output_details()[0]["index"]).shape == (1, 10)


def test_loaded_baseline_with_pqat_and_full_int8_keeps_sparsity(tiny_npz, tmp_path):
    from compression.inputs import data
    from compression.engine import models

    ds = data.load_npz(tiny_npz)
    model = models.train_baseline("lenet_300_100", ds, epochs=3, batch_size=32, seed=1)
    path = tmp_path / "mine.keras"
    model.save(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    recipe = tiny_recipe(tiny_npz, [PRUNE, QUANTIZE], export="int8_full", baseline={"path": str(path)})
    report = run_recipe(Recipe.from_dict(recipe), tmp_path / "run")
    assert report["baseline"]["source"] == "loaded"
    assert [s["variant"] for s in report["stages"]] == ["prune", "pqat"]
    assert report["final"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    # the user's file and the baseline are unchanged by the run
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    own = float(np.mean(models.predict_classes(model, ds.x_test) == ds.y_test))
    assert report["baseline"]["metrics"]["accuracy"] == pytest.approx(own)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tmp_path / "run" / "model.tflite"))
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert report["final"]["accuracy"] > 0.5


def test_cqat_keeps_clusters_into_the_file(tiny_npz, tmp_path):
    report = run_recipe(Recipe.from_dict(tiny_recipe(tiny_npz, [CLUSTER, QUANTIZE], export="int8_dynamic")),
                        tmp_path)
    assert report["stages"][1]["variant"] == "cqat"
    assert max_unique(report["final"]) <= 8


def test_an_explicitly_unsafe_order_shows_the_undone_sparsity(tiny_npz, tmp_path):
    unsafe = tiny_recipe(tiny_npz, [PRUNE, {**CLUSTER, "preserve": False}], export="float16",
                         allow_unsafe_order=True)
    report = run_recipe(Recipe.from_dict(unsafe), tmp_path)
    assert report["stages"][1]["variant"] == "cluster"
    assert report["stages"][1]["warnings"]
    assert report["final"]["sparsity"] < 0.2
    assert any("undid sparsity" in s and "80.0%" in s for s in report["undone"])
    assert (tmp_path / "model.tflite").stat().st_size < 0.6 * report["baseline"]["metrics"]["tflite_bytes"]


def test_cancel_leaves_nothing_that_looks_like_a_result(tiny_npz, tmp_path):
    def cancel_in_second_epoch(event):
        if event["stage"] == "baseline" and (event["epoch"] or 0) >= 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        run_recipe(Recipe.from_dict(tiny_recipe(tiny_npz, [PRUNE])), tmp_path, progress=cancel_in_second_epoch)
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "model.tflite").exists()
    assert not list(tmp_path.glob(".partial*"))
    assert (tmp_path / "recipe.json").exists()


def test_a_missing_dataset_file_is_a_user_error(tmp_path):
    recipe = tiny_recipe(tmp_path / "nowhere.npz", [PRUNE])
    with pytest.raises(DatasetError, match="does not exist"):
        run_recipe(Recipe.from_dict(recipe), tmp_path / "run")
    assert not (tmp_path / "run" / "report.json").exists()


@pytest.mark.parametrize("steps, export", [([], "float32"), ([QUANTIZE], "int8_full")])
def test_a_studio_baseline_exports_a_file_that_takes_raw_pixel_values(tmp_path, steps, export):
    """digits pixels are 0..16: the file divides by 16 itself, so an app feeds it what an image holds."""
    from ai_edge_litert.interpreter import Interpreter

    from compression.inputs import data

    recipe = Recipe.from_dict({"name": "raw", "dataset": "digits", "max_train_samples": 300, "latency_runs": 2,
                               "baseline": {"arch": "lenet_300_100", "epochs": 3, "batch_size": 32},
                               "steps": steps, "export": export})
    report = run_recipe(recipe, tmp_path)
    contract = report["input"]
    assert contract["value_range"] == [0.0, 16.0] and "divides by 16 itself" in contract["scaling"]
    raw = data.load_digits().x_test * 16.0  # what the digits images hold, unscaled
    assert raw.max() == 16.0
    interp = Interpreter(model_path=str(tmp_path / "model.tflite"))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [len(raw), 8, 8])
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = raw.astype(np.float32)
    if inp["dtype"] == np.int8:  # int8_full: quantize with the file's own input scale
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    preds = interp.get_tensor(out["index"]).argmax(axis=1)
    with np.load(tmp_path / "predictions.npz") as p:
        np.testing.assert_array_equal(preds, p["final_pred"])
    assert report["final"]["accuracy"] == pytest.approx(float(np.mean(preds == data.load_digits().y_test)))
    # the dashboard's "Try it" reads the contract from the report and feeds the file raw values too
    from compression.studio import tryit

    x01, _y, _names = tryit.test_split("digits")
    tried = [p.label for p in tryit.predict(tmp_path / "model.tflite", x01[:20])]
    assert tried == list(preds[:20])
    # the bundle's reproduce.py, run on its own in the unpacked bundle, prints the accuracy the report gives
    import subprocess
    import sys
    import zipfile

    from compression.studio import bundle

    out = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(bundle.bundle_zip(report, recipe.to_dict(), (tmp_path / "model.tflite").read_bytes(),
                                                 "raw"))).extractall(out)
    script = (out / "reproduce.py").read_text()
    assert len(script.splitlines()) <= 10
    printed = subprocess.run([sys.executable, "reproduce.py"], cwd=out, capture_output=True, text=True, timeout=120)
    assert printed.stdout.strip() == f"accuracy {report['final']['accuracy']:.4f} on 359 test samples", printed.stderr
    assert report["final"]["accuracy"] > 0.5  # 300 samples, 3 epochs: learnt, if not well


# --- the page tests' fixtures are what the engine writes ---------------------------------------------


def _shape(value):
    """The key tree of a report: dict keys recursively, a list by its first element."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value and isinstance(value[0], (dict, list)) else []
    return None


def test_the_page_fixtures_have_the_shape_the_engine_writes_today(pcqat_run):
    """tests/fixtures/runs/ hold real runs; when the report's shape changes, make them again with
    python tests/fixtures/make_fixtures.py (the page and chart tests run on them)."""
    from pathlib import Path

    _out, report, _ = pcqat_run
    fixture = json.loads((Path(__file__).parent / "fixtures" / "runs" / "compress" / "report.json").read_text())
    ours, theirs = _shape(json.loads(json.dumps(report))), _shape(fixture)
    for part in ("baseline", "stages", "final", "input", "dataset", "artifacts"):
        assert ours[part] == theirs[part], f"report.json's {part} changed shape: run tests/fixtures/make_fixtures.py"


# --- nested models: walked, and refused by the methods in one line ---------------------------------


def test_a_nested_model_is_measured_through_and_refused_by_the_methods(tiny_npz, tmp_path):
    import tf_keras

    from compression.engine import measure, models
    from compression.engine.methods.base import MethodContext
    from compression.engine import methods as executors
    from compression.inputs import data
    from compression.recipe import methods

    ds = data.load_npz(tiny_npz)
    inner = tf_keras.Sequential([tf_keras.layers.Dense(32, activation="relu", name="inner_fc")], name="backbone")
    x = inp = tf_keras.Input((8, 8))
    x = tf_keras.layers.Flatten()(x)
    x = inner(x)
    out = tf_keras.layers.Dense(10, activation="softmax", name="head")(x)
    model = tf_keras.Model(inp, out)
    assert measure.kernel_names(model) == ["inner_fc", "head"]  # walked into the nested model
    m = measure.measure_keras(model, ds, "float32", 2, qat=False)
    assert [row["name"] for row in m.metrics["layers"]] == ["inner_fc", "head"]
    step = methods.step_type("prune").from_dict({"method": "prune", "epochs": 1}, "steps[0]")
    ctx = MethodContext(baseline=model, initial_weights=None, earlier=[], variant="prune", where="steps[0]")
    with pytest.raises(RecipeError, match=r"^steps\[0\]\.layers: layer inner_fc sits inside a nested model"):
        executors.get("prune").apply(model, ds, step, ctx)
    del models
