"""The dashboard's TF-free helpers: defaults and presets, health checks, the download bundle,
read-only mode and the offline HTML report."""

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from compression.errors import UserError  # noqa: E402
from compression.recipe import Recipe  # noqa: E402
from compression.studio import bundle, dashboard, health  # noqa: E402
from synthetic import add_collapsed_run, make_workspace  # noqa: E402


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_HOME", str(tmp_path))
    monkeypatch.setenv("COMPRESSION_EMBEDDED_WORKER", "0")
    monkeypatch.delenv("COMPRESSION_READ_ONLY", raising=False)
    jobs = make_workspace(tmp_path)
    jobs["collapsed"] = add_collapsed_run(tmp_path)
    return tmp_path, jobs


def _report(job) -> dict:
    return json.loads((Path(job["run_dir"]) / "report.json").read_text())


# --- defaults and presets ----------------------------------------------------------------------


def test_the_default_baseline_is_a_valid_uncapped_recipe():
    r = dashboard.baseline_recipe("b", dashboard.DEFAULT_DATASET, arch=dashboard.DEFAULT_BASELINE["arch"])
    assert r.max_train_samples is None
    assert r.baseline.epochs == dashboard.DEFAULT_BASELINE["epochs"] and r.baseline.batch_size == 32


@pytest.mark.parametrize("n_train,cap", [(None, None), (1294, None), (1294, 600), (54000, None), (50000, 5000), (300, None)])
def test_no_preset_warns_about_itself_on_any_amount_of_data(n_train, cap):
    n = n_train or dashboard.DIGITS_N_TRAIN
    for key, preset in dashboard.presets(n_train, cap).items():
        recipe = dashboard.compress_recipe(None, preset["steps"], name="p", export=preset["export"],
                                           fallback={"dataset": "digits", "max_train_samples": cap,
                                                     "baseline": dashboard.DEFAULT_BASELINE})
        assert dashboard.schedule_warnings(recipe, lambda bs: dashboard.steps_per_epoch(n, bs, cap)) == [], key


def test_presets_scale_the_pruning_schedule_to_the_data():
    small = dashboard.presets(1294)[dashboard.DEFAULT_PRESET]["steps"][0]
    big = dashboard.presets(54000)[dashboard.DEFAULT_PRESET]["steps"][0]
    assert small["batch_size"] == 32 and big["batch_size"] == 128
    assert small["end_step"] < big["end_step"]
    for s in (small, big):
        assert s["end_step"] // s["frequency"] >= 9  # about ten mask updates, never one jump


def test_the_deep_compression_presets_keep_their_baseline_recipe_on_mnist_and_drop_the_shifts_elsewhere():
    key = "Deep Compression: LeNet-300-100 on MNIST"
    on_mnist = dashboard.presets(dashboard.MNIST_N_TRAIN, dataset="mnist")[key]
    on_digits = dashboard.presets(dataset="digits")[key]
    assert on_mnist["baseline"]["augment_shift"] == 2 and on_mnist["baseline"]["label_smoothing"] == 0.1
    assert "warning" not in on_mnist and on_digits["warning"]
    assert on_digits["baseline"]["augment_shift"] == 0  # 2 pixels of an 8x8 image is a quarter of it
    assert on_digits["baseline"]["label_smoothing"] == 0.1


def test_the_quick_digits_example_is_a_preset():
    p = dashboard.presets()["quick digits demo"]
    assert p["file"] == "quick_digits.json" and [s["method"] for s in p["steps"]] == ["prune", "cluster", "quantize"]


# --- health ----------------------------------------------------------------------------------------


def test_a_collapsed_run_is_at_chance_with_causes_and_fixes(ws):
    _, jobs = ws
    findings = health.assess(_report(jobs["collapsed"]))
    kinds = [f.kind for f in findings]
    assert "chance" in kinds and "weak_baseline" in kinds
    chance = next(f for f in findings if f.kind == "chance")
    text = " ".join(chance.causes + chance.fixes)
    assert "600 samples" in text and "jump" in text and "max_train_samples" in text
    assert "\n" not in chance.message


def test_a_healthy_run_has_no_findings_and_the_threshold_is_settable(ws):
    _, jobs = ws
    report = _report(jobs["compress"])  # a real run: loses 0.28 points
    assert health.assess(report) == []
    lost = health.assess(report, threshold_pts=0.1)
    assert [f.kind for f in lost] == ["loss"] and "0.1-point limit" in lost[0].message


def test_a_class_that_loses_most_of_its_recall_is_named(ws):
    _, jobs = ws
    report = _report(jobs["compress"])
    report["final"]["per_class_recall"][8] = 0.1
    findings = health.assess(report)
    assert [f.kind for f in findings] == ["class"] and "Class 8" in findings[0].message


def test_a_baseline_only_run_is_not_compared_with_itself(ws):
    _, jobs = ws
    assert health.assess(_report(jobs["baseline"])) == []


# --- bundle --------------------------------------------------------------------------------------


def test_slugs_are_clean_file_names():
    assert bundle.slug("quick demo on digits (offline, under a minute)") == "quick-demo-on-digits-offline-under-a-minute"
    assert bundle.slug("prune → cluster → QAT") == "prune-cluster-qat"
    assert bundle.slug("   ") == "model" and bundle.slug("Ünïcode") == "unicode"


def test_the_input_contract_shows_a_dash_when_missing_and_the_fields_when_present(ws):
    _, jobs = ws
    report = _report(jobs["compress"])
    report.pop("input")  # a run older than the input contract
    old = bundle.input_contract(report)
    assert old["shape"] == "–" and old["dtype"] == "–" and not old["known"] and old["class_names"][0] == "0"
    report["input"] = {"shape": [8, 8], "dtype": "float32", "value_range": [0, 16], "scaling": "pixels 0..16",
                       "output": "10 probabilities", "class_names": list("abcdefghij")}
    new = bundle.input_contract(report)
    assert new["shape"] == "8×8" and new["value_range"] == "0 to 16" and new["class_names"][0] == "a"


def test_the_bundle_zip_holds_the_model_labels_and_card(ws):
    home, jobs = ws
    report = _report(jobs["compress"])
    report["recipe"]["baseline"] = {"path": str(Path(jobs["baseline"]["run_dir"]) / "baseline.keras"), "seed": 0}
    data = bundle.bundle_zip(report, report["recipe"], b"TFL3", "prune → cluster → QAT", baseline=b"PK-baseline",
                             home=home)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["MODEL.md", "baseline.keras", "labels.txt", "prune-cluster-qat.tflite",
                                        "recipe.json", "reproduce.py"]
        assert z.read("labels.txt").decode().splitlines() == [str(i) for i in range(10)]
        assert z.read("baseline.keras") == b"PK-baseline"
        card = z.read("MODEL.md").decode()
        assert "| 8 |" in card and "Test accuracy of this file" in card and '"method": "prune"' in card
        assert "Test split: scikit-learn's 8x8 digits (1,797 images): a permutation seeded with 0" in card
        assert "its first 20% (359 images)" in card and "python reproduce.py" in card
        recipe = json.loads(z.read("recipe.json"))
        assert recipe["baseline"]["path"] == "baseline.keras" and str(home) not in json.dumps(recipe) + card
        prune = recipe["steps"][0]
        assert prune["schedule"] == "polynomial_decay" and "target_sparsity" not in prune and "decay_rate" not in prune
        assert Recipe.from_dict(recipe).steps[0].final_sparsity == report["recipe"]["steps"][0]["final_sparsity"]
        script = z.read("reproduce.py").decode()
        assert len(script.splitlines()) <= 10 and "prune-cluster-qat.tflite" in script
    home_recipe = bundle.portable_recipe(report["recipe"], home)  # the Pipeline page's download: workspace-relative
    assert home_recipe["baseline"]["path"] == f"runs/{jobs['baseline']['id']}/baseline.keras"


# --- read-only -------------------------------------------------------------------------------------


def test_read_only_refuses_submit_cancel_and_uploads_server_side(ws, monkeypatch):
    home, jobs = ws
    monkeypatch.setenv("COMPRESSION_READ_ONLY", "1")
    recipe = Recipe.from_dict({"name": "x", "dataset": "digits", "baseline": {"arch": "lenet_300_100"}})
    with pytest.raises(UserError, match="read-only"):
        dashboard.submit(recipe, home)
    with pytest.raises(UserError, match="read-only"):
        dashboard.cancel(jobs["running"]["id"], home)
    with pytest.raises(UserError, match="read-only"):
        dashboard.save_upload(io.BytesIO(b"x"), "x.npz", "dataset")
    assert not (Path(jobs["running"]["run_dir"]) / "cancel").exists()
    assert not (home / "uploads").exists()


def test_read_only_comes_from_the_secret_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("COMPRESSION_READ_ONLY", raising=False)
    try:
        dashboard.set_read_only_secret(True)
        assert dashboard.read_only()
        monkeypatch.setenv("COMPRESSION_READ_ONLY", "0")
        assert not dashboard.read_only()
    finally:
        dashboard.set_read_only_secret(False)


# --- try it feeds the file what the run fed it ----------------------------------------------------


def test_try_it_adapts_samples_as_the_run_did(tmp_path):
    from compression.inputs import data
    from compression.studio import tryit

    spec = data.adaptation((8, 8), (12, 12, 3))
    (tmp_path / "report.json").write_text(json.dumps({"input": {"raw_scale": 16.0, "adapt": spec}}))
    (tmp_path / "model.tflite").write_bytes(b"TFL3")
    x = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    fitted = tryit.fitted_samples(tmp_path / "model.tflite", x)
    np.testing.assert_allclose(fitted, data.adapt_samples(x, spec) * 16.0)
    assert fitted.shape == (2, 12, 12, 3)
    (tmp_path / "report.json").write_text(json.dumps({"input": {"adapt": {"kind": "pad", "to": "garbage"}}}))
    assert tryit.fitted_samples(tmp_path / "model.tflite", x).shape == (2, 8, 8)  # damaged spec: left as is
