"""Charts, table builders, the run reader, the dashboard helpers and upload checks: no Streamlit, no TensorFlow."""

import io
import json
import sys
import time
import zipfile
from pathlib import Path

import altair as alt
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from compression.engine.metrics import histogram  # noqa: E402  (numpy only: the engine's binning)
from compression.studio import charts, dashboard, uploads  # noqa: E402
from compression.errors import RecipeError  # noqa: E402
from compression.recipe import figures  # noqa: E402
from compression.store.runs import ResultsError, load_run, try_load_run  # noqa: E402
from synthetic import make_workspace, recall_from_predictions  # noqa: E402


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    home = tmp_path_factory.mktemp("ws")
    jobs = make_workspace(home)
    return home, jobs


@pytest.fixture(scope="module")
def run(ws):
    return load_run(ws[1]["compress"]["run_dir"])


def _marks_have_tooltips(spec) -> None:
    """Every mark in a Vega-Lite spec (layers and concatenations included) has a tooltip."""
    found = 0

    def walk(node):
        nonlocal found
        if isinstance(node, dict):
            if "mark" in node:
                found += 1
                assert "tooltip" in (node.get("encoding") or {}), f"mark {node['mark']} has no tooltip"
            for key in ("layer", "hconcat", "vconcat", "concat"):
                for child in node.get(key, []):
                    walk(child)

    walk(spec)
    assert found > 0


# --- reading a run ---------------------------------------------------------------------------


def test_load_run_reads_every_file(run):
    assert run.report["stages"][0]["method"] == "prune"
    assert run.weights and run.predictions is not None
    assert run.problems == []
    assert run.artifact("tflite").name == "model.tflite"
    assert run.artifact("report").name == "report.json"


def test_load_run_without_report_raises_a_one_line_error(ws):
    with pytest.raises(ResultsError, match="no report yet"):
        load_run(ws[1]["failed"]["run_dir"])
    assert try_load_run(ws[1]["running"]["run_dir"]) is None


def test_artifact_outside_the_run_folder_is_not_followed(tmp_path, run):
    report = dict(run.report, artifacts={"tflite": "../../etc/passwd"})
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert load_run(tmp_path).artifact("tflite") is None


def test_broken_optional_files_become_notes_not_errors(tmp_path, run):
    (tmp_path / "report.json").write_text(json.dumps(run.report))
    (tmp_path / "weights.json").write_text("{not json")
    (tmp_path / "predictions.npz").write_bytes(b"garbage")
    r = load_run(tmp_path)
    assert r.weights is None and r.predictions is None and len(r.problems) == 2


# --- tables ----------------------------------------------------------------------------------


def test_stage_table_has_a_row_per_stage_and_ratios_to_baseline(run):
    t = charts.stage_table(run.report)
    assert list(t["stage"]) == ["0 baseline", "1 prune", "2 cluster (sparsity-preserving)", "3 quantize (PCQAT)",
                                "final TFLite (int8_dynamic)"]
    assert t["tflite_zip_ratio"].iloc[0] == pytest.approx(1.0)
    assert t["tflite_zip_ratio"].iloc[-1] < 0.1
    assert t["unique_values"].iloc[2] <= 16  # clustered: few distinct values per layer
    assert np.isnan(t["keras_zip_kb"].iloc[-1])  # the final file has no Keras size


def test_architecture_table(run):
    df = charts.architecture_df(run.report)
    assert list(df.columns) == ["layer", "type", "output shape", "parameters"]
    assert df["parameters"].sum() == run.report["baseline"]["metrics"]["params_total"]


def test_recall_shift_marks_the_class_that_lost(run):
    df = charts.recall_df(run.report)
    worst = df.sort_values("shift").iloc[0]
    base, final = recall_from_predictions(run.run_dir)  # recomputed from the predictions
    assert worst["class"] == str(int(np.argmin(final - base))) and worst["direction"] == "worse"
    assert worst["shift"] == pytest.approx(float(np.min(final - base)))


def test_recall_is_recomputed_from_predictions_when_the_report_lacks_it(run):
    report = json.loads(json.dumps(run.report))
    del report["final"]["per_class_recall"]
    df = charts.recall_df(report, run.predictions)
    base, final = recall_from_predictions(run.run_dir)
    assert len(df) == 10 and df["shift"].to_numpy() == pytest.approx(final - base)


def test_changed_samples_are_upscaled_and_captioned(run):
    samples = charts.changed_samples(run.predictions, run.report["dataset"]["class_names"])
    assert len(samples) == len(run.predictions["changed_index"])
    s = samples[0]
    assert s["image"].shape == (96, 96) and s["image"].dtype == np.uint8
    assert {"now wrong", "now right"} <= {x["kind"] for x in samples}


def test_histogram_tables_are_60_bins_per_stage_whatever_the_layer_size():
    big = np.random.default_rng(0).normal(size=10_000_000).astype(np.float32)
    big[: 9_000_000] = 0
    t0 = time.perf_counter()
    entry = histogram("huge", big)
    assert time.perf_counter() - t0 < 5
    weights = {"stages": [{"stage": "baseline", "layers": [dict(entry, name="huge")]},
                          {"stage": "final", "layers": [dict(entry, name="huge")]}]}
    hist = charts.histogram_df(weights, "huge")
    assert len(hist) == 2 * charts.HIST_BINS
    zeros = charts.zeros_df(weights, "huge")
    assert zeros["zeros"].iloc[0] == 9_000_000 and zeros["share"].iloc[0] == pytest.approx(0.9)
    spec = charts.weight_histogram_chart(hist, zeros).to_dict()
    assert len(json.dumps(spec)) < 100_000  # the browser gets bins, never the weights


def test_the_engine_binning_lists_few_distinct_values():
    w = np.repeat(np.array([0.0, -0.1, 0.2], np.float32), 1000)
    e = histogram("w", w)
    assert e["values"] == pytest.approx([-0.1, 0.0, 0.2]) and e["value_counts"] == [1000, 1000, 1000]
    assert e["zeros"] == 1000 and sum(e["counts"]) == 2000


def test_centroids_of_the_clustered_stage(run):
    stages = charts.clustered_stages(run.weights, "fc1")
    assert stages[0] == "2 cluster"
    cents = charts.centroids_df(run.weights, "fc1", "2 cluster")
    assert (cents["kind"] == "zero (pruned)").sum() == 1
    assert 2 <= (cents["kind"] == "centroid").sum() <= 16
    assert cents["count"].sum() == 64 * 300


def test_pareto_mask():
    size = np.array([10, 20, 30, 15])
    acc = np.array([0.90, 0.95, 0.94, 0.89])
    assert charts.pareto_mask(size, acc).tolist() == [True, True, False, False]


# --- charts: valid Vega-Lite, tooltips on every mark ------------------------------------------


def test_every_results_chart_compiles_with_tooltips(run):
    w = run.weights
    hist = charts.histogram_df(w, "fc1", ["0 baseline", "final TFLite"])
    zeros = charts.zeros_df(w, "fc1", ["0 baseline", "final TFLite"])
    built = [
        charts.weight_histogram_chart(hist, zeros),
        charts.weight_histogram_chart(hist, zeros, log_scale=True),
        charts.centroid_chart(charts.histogram_df(w, "fc1", ["1 prune"]), charts.centroids_df(w, "fc1", "2 cluster")),
        charts.sparsity_chart(charts.sparsity_df(run.report)),
        charts.size_chart(charts.sizes_df(run.report)),
        charts.latency_chart(charts.latency_df(run.report)),
        charts.recall_shift_chart(charts.recall_df(run.report)),
    ]
    for chart in built:
        assert isinstance(chart, alt.TopLevelMixin)
        _marks_have_tooltips(chart.to_dict())


def test_log_scale_drops_empty_bins_and_keeps_zeros_visible(run):
    hist = charts.histogram_df(run.weights, "fc1", ["final TFLite"])
    zeros = charts.zeros_df(run.weights, "fc1", ["final TFLite"])
    spec = charts.weight_histogram_chart(hist, zeros, log_scale=True).to_dict()
    bars = spec["hconcat"][0]
    assert bars["encoding"]["y"]["scale"]["type"] == "log"
    datasets = spec["datasets"]
    assert all(row["count"] > 0 for rows in datasets.values() for row in rows if "count" in row)
    assert any(row.get("zeros", 0) > 0 for rows in datasets.values() for row in rows)


def test_compare_charts(ws):
    home, jobs = ws
    runs = [(j["name"], load_run(j["run_dir"]).report) for k, j in jobs.items() if k in ("baseline", "compress", "prune")]
    df = charts.compare_df(runs)
    assert len(df) == 3 and df["pareto"].any()
    for chart in (charts.compare_size_chart(charts.compare_sizes_df(df)), charts.compare_latency_chart(df),
                  charts.pareto_chart(df), charts.recall_heatmap(charts.recall_matrix_df(runs))):
        _marks_have_tooltips(chart.to_dict())


def test_compare_charts_shorten_long_names_and_keep_the_full_name_in_the_tooltip(ws):
    home, jobs = ws
    long = "quick demo on digits (offline, under a minute)"
    runs = [(long, load_run(jobs["compress"]["run_dir"]).report), ("b", load_run(jobs["prune"]["run_dir"]).report)]
    df = charts.compare_df(runs)
    assert df["label"].tolist() == ["quick demo on digits…", "b"] and df["run"].tolist()[0] == long
    size = charts.compare_size_chart(charts.compare_sizes_df(df)).to_dict()
    assert size["encoding"]["y"]["field"] == "label"
    assert size["encoding"]["color"]["legend"]["labelLimit"] == 0  # "TFLite zip" is never cut to "TFLi"
    assert any(t["field"] == "run" for t in size["encoding"]["tooltip"])
    pareto = charts.pareto_chart(df).to_dict()
    texts = [layer for layer in pareto["layer"] if layer["mark"]["type"] == "text"]
    assert texts and all(t["encoding"]["text"]["field"] == "label" for t in texts)


def test_pareto_labels_never_overlap_each_other_or_a_point_nor_leave_the_plot():
    """Twelve runs crowded at nearly the same size and accuracy: each label gets its own slot."""
    rng = np.random.default_rng(0)
    kb = 40 + rng.random(12) * 4
    acc = 0.97 + rng.random(12) * 0.004
    labels = [f"run number {i}" for i in range(12)]
    x_dom, y_dom = (30.0, 60.0), (0.96, 0.98)
    label_y, side = charts.pareto_label_layout(kb, acc, labels, x_dom, y_dom)
    w, h = charts.PARETO_W, charts.PARETO_H
    px = (np.log10(kb) - np.log10(x_dom[0])) / (np.log10(x_dom[1]) - np.log10(x_dom[0])) * w
    boxes = []
    for i, text in enumerate(labels):
        ly = (1 - (label_y[i] - y_dom[0]) / (y_dom[1] - y_dom[0])) * h
        width = charts.LABEL_CHAR_PX * len(text)
        x0 = px[i] + 9 if side[i] == "left" else px[i] - 9 - width
        boxes.append((x0, ly - 6, x0 + width, ly + 6))
        assert 0 <= ly - 6 and ly + 6 <= h and 0 <= x0 and x0 + width <= w, (i, x0, ly)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_the_recall_axis_title_says_where_the_axis_starts(run):
    rec = charts.recall_df(run.report, run.predictions)
    lo, title = charts.recall_axis(rec)
    spec = charts.recall_shift_chart(rec).to_dict()
    x = spec["layer"][0]["encoding"]["x"]
    assert x["scale"]["domain"][0] == lo and x["title"] == title
    assert (lo > 0) == ("starts at" in title) and rec[["baseline", "compressed"]].min().min() >= lo
    collapsed = rec.assign(compressed=0.0)
    assert charts.recall_axis(collapsed) == (0.0, "recall (share of the class found)")


def test_display_tables_have_dashes_not_none(ws):
    home, jobs = ws
    table = charts.stage_table(load_run(jobs["compress"]["run_dir"]).report)
    shown = charts.stage_display(table)
    # the fixed columns, one per declared size figure, latency
    assert len(shown.columns) == 7 + len(figures.size_figures())
    assert shown.iloc[-1]["keras_zip"] == "–" and shown.iloc[0]["accuracy_delta"] == "–"
    # model.dc exists for the exported file only: a dash on every stage, bytes and a ratio on the last row
    assert set(shown["dc"].iloc[:-1]) == {"–"} and "×" in shown.iloc[-1]["dc"]
    assert "×" in shown.iloc[1]["tflite_zip"] and "×" not in shown.iloc[0]["tflite_zip"]
    runs = [(j["name"], load_run(j["run_dir"]).report) for k, j in jobs.items() if k in ("baseline", "compress")]
    cmp = charts.compare_display(charts.compare_df(runs), ["", "⚠ at chance"])
    cells = set(cmp.astype(str).to_numpy().ravel())
    assert not {"None", "nan", "NaN"} & cells


# --- dashboard helpers ---------------------------------------------------------------------------


def test_presets_are_valid_recipes_and_match_the_brief():
    p = dashboard.presets()
    tut = p["tfmot pruning tutorial"]
    assert tut["export"] == "int8_dynamic"
    (prune,) = tut["steps"]
    assert (prune["initial_sparsity"], prune["final_sparsity"]) == (0.5, 0.8)
    # fitted to digits (1,294 samples): batch 32, enough epochs for ~300 steps, the ramp over (nearly) all
    # of them, ending on a mask update so that the engine has nothing to move
    spe = dashboard.steps_per_epoch(dashboard.DIGITS_N_TRAIN, prune["batch_size"])
    assert prune["batch_size"] == 32 and spe * prune["epochs"] >= 300
    assert prune["end_step"] == 10 * prune["frequency"] and spe * prune["epochs"] - 10 < prune["end_step"]
    assert p["textbook 50% → 95% pruning"]["steps"][0]["final_sparsity"] == 0.95
    pcq = p["prune → cluster → QAT"]["steps"]
    assert [s["method"] for s in pcq] == ["prune", "cluster", "quantize"]
    assert pcq[1]["number_of_clusters"] == 16 and pcq[1]["cluster_centroids_init"] == "kmeans_plus_plus"
    for preset in p.values():
        dashboard.compress_recipe(None, preset["steps"], name=preset["name"], export=preset["export"])


def test_compress_recipe_points_at_the_baseline_run(ws):
    base = ws[1]["baseline"]
    r = dashboard.compress_recipe(base, dashboard.presets()["prune → cluster → QAT"]["steps"], name="x",
                                  export="int8_dynamic")
    assert r.baseline.path == str(Path(base["run_dir"]) / "baseline.keras")
    assert r.dataset.name == "digits" and r.max_train_samples == base["recipe"]["max_train_samples"]


def test_compress_recipe_refuses_an_unsafe_order(ws):
    steps = [dashboard.new_step("quantize"), dashboard.new_step("prune")]
    with pytest.raises(RecipeError, match="refused"):
        dashboard.compress_recipe(ws[1]["baseline"], steps, name="x", export="int8_dynamic")


def test_job_facts(ws):
    jobs = dashboard.list_jobs(ws[0])
    assert {j["id"] for j in jobs} >= {ws[1]["baseline"]["id"], ws[1]["compress"]["id"]}
    assert [j["id"] for j in dashboard.baselines(jobs)] == [ws[1]["baseline"]["id"]]
    assert dashboard.fmt_duration(64) == "1 min 04 s" and dashboard.fmt_duration(None) == "–"
    assert dashboard.elapsed_s(ws[1]["compress"]) == pytest.approx(62, abs=1)
    assert dashboard.job_summary(ws[1]["compress"]) == "finished in 1 min 02 s"
    assert "broken.keras" in dashboard.job_summary(ws[1]["failed"])


# --- uploads ------------------------------------------------------------------------------------


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _good_npz() -> bytes:
    rng = np.random.default_rng(0)
    return _npz(x_train=rng.random((40, 8, 8), dtype=np.float32), y_train=np.arange(40) % 3,
                x_test=rng.random((10, 8, 8), dtype=np.float32), y_test=np.arange(10) % 3)


def _keras_zip(config: dict, weights=True) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
        if weights:
            z.writestr("model.weights.h5", _empty_h5())
    return buf.getvalue()


def _empty_h5() -> bytes:
    """A valid HDF5 file with no datasets: weights the cheap check can open and judge."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("layers")
    return buf.getvalue()


def _files(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")) if home.exists() else []


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_a_valid_npz_is_stored_under_uploads(home):
    path, info = uploads.save_upload(_good_npz(), "my data.npz", "dataset", home, deep=False)
    assert path.is_file() and path.name == "my_data.npz" and "uploads" in path.parts
    assert info == {"n_train": 40, "n_test": 10, "input_shape": [8, 8], "num_classes": 3}
    assert uploads.list_uploads("dataset", home) == [path]


@pytest.mark.parametrize("content, message", [
    (_npz(x_train=np.zeros((4, 2)), y_train=np.zeros(4)), "lacks x_test, y_test"),
    (_npz(x_train=np.zeros((4, 2)), y_train=np.zeros(3), x_test=np.zeros((2, 2)), y_test=np.zeros(2)), "has 4 samples"),
    (_npz(x_train=np.zeros((4, 2)), y_train=np.full(4, 0.5), x_test=np.zeros((2, 2)), y_test=np.zeros(2)), "fractions"),
    (_npz(x_train=np.array([{"a": 1}] * 4, dtype=object), y_train=np.zeros(4), x_test=np.zeros((2, 2)),
          y_test=np.zeros(2)), "pickles"),
    (b"PK\x03\x04 this is not a zip", "not a readable .npz"),
], ids=lambda v: v if isinstance(v, str) else "")  # named by the message: zip bytes hold a timestamp, and
# xdist's workers must collect the same test ids
def test_a_wrong_npz_is_refused_and_leaves_the_workspace_as_it_was(home, content, message):
    before = _files(home)
    with pytest.raises(uploads.UploadError, match=message):
        uploads.save_upload(content, "bad.npz", "dataset", home, deep=False)
    assert _files(home) == before


def test_an_oversize_file_is_refused_while_streaming(home, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_NPZ_BYTES", 1000)
    with pytest.raises(uploads.UploadError, match="larger than"):
        uploads.save_upload(io.BytesIO(bytes(5000)), "big.npz", "dataset", home, deep=False)
    assert _files(home) == []


@pytest.mark.parametrize("content, name, message", [
    (b"not a zip at all", "m.keras", "not a Keras model file"),
    (_keras_zip({"class_name": "Sequential", "config": {"layers": []}}, weights=False), "m.keras", "no weights"),
    (_keras_zip({"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Lambda", "config": {"function": "evil"}}]}}), "m.keras", "Lambda"),
    (b"\x89HDF\r\n\x1a\n" + bytes(100), "m.h5", "damaged HDF5"),
    (b"hello", "m.h5", "not an HDF5 file"),
    (b"hello", "m.pkl", "must be a .keras or .h5"),
], ids=["not-a-zip", "no-weights", "lambda", "damaged-hdf5", "not-hdf5", "wrong-suffix"])  # zip bytes hold a
# timestamp: named ids keep the two xdist workers' collections identical
def test_a_corrupt_or_hostile_model_is_refused(home, content, name, message):
    with pytest.raises(uploads.UploadError, match=message):
        uploads.save_upload(content, name, "model", home, deep=False)
    assert _files(home) == []


def test_a_zip_bomb_is_refused(home):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
        z.writestr("model.weights.h5", bytes(50 * 1024 * 1024))
    with pytest.raises(uploads.UploadError, match="zip bomb"):
        uploads.save_upload(buf.getvalue(), "bomb.keras", "model", home, deep=False)


def test_a_structurally_sound_keras_file_passes_the_cheap_check(home):
    path, info = uploads.save_upload(_keras_zip({"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "config": {}}]}}), "ok.keras", "model", home, deep=False)
    assert info["format"] == "keras" and info["layers"] == 1 and path.is_file()


def test_schedule_warnings_catch_a_mask_that_never_updates(ws):
    steps = [dict(dashboard.new_step("prune"), final_sparsity=0.9, epochs=2)]  # tfmot's default: mask every 100 steps
    r = dashboard.compress_recipe(ws[1]["baseline"], steps, name="x", export="int8_dynamic")
    few = dashboard.schedule_warnings(r, lambda bs: 5)  # 2 epochs x 5 steps, mask every 100 steps
    assert len(few) == 1 and "frequency lowered from 100 to 2" in few[0] and "in one or two mask updates" in few[0]
    assert dashboard.schedule_warnings(r, lambda bs: 500) == []
    assert dashboard.schedule_warnings(r, lambda bs: None) == []


@pytest.mark.slow
def test_weights_cut_short_are_refused_before_the_engine_loads_them(home, tmp_path):
    """A .keras file whose weights are cut short: the cheap check opens the weights (to judge every
    dataset's declared size before anything reads it) and refuses them in one line."""
    pytest.importorskip("compression.engine.models")
    code = ("import compression, sys; from compression.engine import models; from compression.recipe.choices import Arch; "
            "models.save(models.build(Arch.LENET_300_100, (8, 8, 1), 10), sys.argv[1])")
    import subprocess

    good = tmp_path / "m.keras"
    subprocess.run([sys.executable, "-c", code, str(good)], check=True, capture_output=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[1])
    buf = io.BytesIO()
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info, data[:200] if info.filename.endswith(".h5") else data)
    with pytest.raises(uploads.UploadError, match="^cut.keras: its model.weights.h5 is not a readable HDF5 file"):
        uploads.save_upload(buf.getvalue(), "cut.keras", "model", home)
    assert _files(home) == []
    assert _files(home) == []


def test_flip_counts_cover_the_whole_test_split_not_just_the_gallery():
    import numpy as np

    from compression.studio.charts import flip_counts

    y = np.array([0, 1, 2, 3, 4, 5])
    base = np.array([0, 1, 2, 0, 4, 1])   # right, right, right, wrong, right, wrong
    final = np.array([0, 2, 1, 3, 4, 2])  # same, now wrong, now wrong, now right, same, still wrong
    counts = flip_counts({"y_true": y, "baseline_pred": base, "final_pred": final, "changed_index": np.array([1])})
    assert counts == {"total": 6, "changed": 4, "now_wrong": 2, "now_right": 1, "still_wrong": 1}
    assert flip_counts(None)["changed"] == 0


def test_the_frontier_places_runs_beside_the_published_rows_of_their_network(run):
    from compression.studio import published

    report = json.loads(json.dumps(run.report))
    report["recipe"]["dataset"] = "mnist"  # the published rows are on MNIST; the fixture ran on digits
    report["recipe"]["baseline"] = {"arch": "lenet_300_100"}
    df = charts.frontier_df([("mine", report), ("on digits", run.report)], "dc_bytes")
    mine = df[df["kind"] == "studio run"]
    assert list(mine["label"]) == ["mine"]
    base, final = report["baseline"]["metrics"], report["final"]
    assert mine["ratio"].iloc[0] == pytest.approx(base["tflite_bytes"] / final["dc_bytes"])
    assert mine["error_pct"].iloc[0] == pytest.approx(100 * (1 - final["accuracy"]))
    assert sorted(df[df["kind"] == "published"]["ratio"]) == sorted(p.ratio for p in published.for_arch("lenet_300_100"))
    spec = charts.frontier_chart(df).to_dict()
    _marks_have_tooltips(spec)
    assert published.dominated_by("lenet_300_100", 70, 1.5) == list(published.for_arch("lenet_300_100"))
    assert published.dominated_by("lenet_300_100", 70, 1.6) == [p for p in published.for_arch("lenet_300_100")
                                                               if p.error_pct >= 1.6]


def test_frontier_labels_that_would_overlap_go_below_their_points():
    import pandas as pd

    # DNS (56x, 1.99 %) and soft weight-sharing (64x, 1.94 %): side by side, their labels would cross
    df = pd.DataFrame({"label": ["Deep Compression", "Dynamic Network Surgery", "Soft weight-sharing", "mean", "peer"],
                       "ratio": [40.0, 56.0, 64.0, 73.7, 36.9], "error_pct": [1.58, 1.99, 1.94, 1.33, 2.8],
                       "kind": ["published"] * 3 + ["studio preset", "peer"], "name": ["a", "b", "c", "d", "e"],
                       "spread_pct": [np.nan] * 3 + [0.05, np.nan]})
    assert charts.label_below(df, 560, 320) == [False, False, True, False, False]
    far = df.assign(error_pct=[1.0, 2.0, 3.0, 4.0, 5.0])  # far apart: every label above its point
    assert charts.label_below(far, 560, 320) == [False] * 5
    spec = charts.frontier_chart(df).to_dict()
    dys = sorted(layer["mark"].get("dy") for layer in spec["layer"] if layer["mark"].get("type") == "text")
    assert dys == [-7, 12]
    _marks_have_tooltips(spec)
