"""The Deep Compression benchmark's tables from given rows (no training): the ablation table's signs
and the clustering-epoch table's verdicts."""

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import deep_compression as dc  # noqa: E402


def row(label, role, error, dc_bytes, seed=0):
    return dc.Row(group="lenet_300_100", label=label, source="x.json", error_pct=error, tflite_bytes=1000,
                  tflite_zip_bytes=500, dc_bytes=dc_bytes, latency_ms=0.1, wall_s=1.0, cpu_s=1.0, ref_bytes=10_000,
                  export="int8_dynamic", role=role, seed=seed)


META = {"machine": {"cpu": "c", "cores": 2, "system": "s", "python": "3.11", "load": [0, 0, 0]}, "load_end": [0, 0, 0],
        "versions": {"tensorflow": "t", "tfmot": "m"}, "command": "python bench/deep_compression.py", "date": "d",
        "wall_s": 1.0}


def test_the_ablation_table_gives_the_change_of_having_each_ingredient():
    rows = [row("Deep Compression preset (studio), seed 0", "preset", 1.30, 100),
            # taken out of the preset: without it the error rises, so having it lowered the error
            row("ablation: without the baseline recipe (no random shifts)", "ablation", 1.80, 100),
            # put in: with it the error rises and the file grows, so having it costs
            row("ablation: with distillation from the float baseline", "ablation", 1.50, 125)]
    text = dc.markdown(rows, dict(META), quick=False)
    lines = {ln.split(" | ")[1]: ln for ln in text.splitlines() if ln.startswith("| LeNet-300-100 on MNIST | ")}
    base = lines["the baseline recipe (no random shifts)"]
    assert "| yes | 1.30% | 1.80% | -0.50 points | 100.0x | 100.0x | +0.0x |" in base
    distill = lines["distillation from the float baseline"]
    assert "| no | 1.50% | 1.30% | +0.20 points | 80.0x | 100.0x | -20.0x |" in distill


def test_the_clustering_epoch_table_judges_64_clusters_against_the_bound():
    timing = {"meta": {"dataset": "mnist", "n_train": 54000, "batch_size": 128, "rounds": 2}, "rows": [
        {"label": "float fine-tuning", "path": "float", "clusters": None, "wall_s_min": 4.0, "cpu_s_min": 6.0,
         "wall_x": 1.0, "cpu_x": 1.0, "assignments_equal": None},
        {"label": "cluster 16", "path": "fast", "clusters": 16, "wall_s_min": 5.6, "cpu_s_min": 8.0,
         "wall_x": 1.4, "cpu_x": 1.33, "assignments_equal": True},
        {"label": "PCQAT 64", "path": "fast", "clusters": 64, "wall_s_min": 7.6, "cpu_s_min": 8.4,
         "wall_x": 1.9, "cpu_x": 1.4, "assignments_equal": False}]}
    text = "\n".join(dc.cluster_timing_lines(timing))
    assert "54000 training samples, batch 128" in text and "fastest of 2 epochs" in text
    assert "| float fine-tuning | 4.00 | 6.00 | 1.00 | 1.00 |  |  |" in text
    assert "| cluster 16 (fast) | 5.60 | 8.00 | 1.40 | 1.33 |  | yes |" in text  # the bound is for 64 clusters
    assert "| PCQAT 64 (fast) | 7.60 | 8.40 | 1.90 | 1.40 | wall: **missed**, CPU: met | **no** |" in text
    # and the benchmark's page carries the table when the run timed it
    assert "## The cost of a clustering epoch" in dc.markdown([], {**META, "cluster_timing": timing}, quick=False)


def test_a_finished_run_is_reused_by_its_identity_not_its_name(tmp_path):
    import json

    spec = {"name": "preset · seed 0", "dataset": "digits", "baseline": {"arch": "lenet_300_100", "seed": 0},
            "steps": [], "export": "float32", "latency_runs": 5}
    (tmp_path / dc.DONE_FILE).write_text(json.dumps({"spec": spec, "cpu_s": 12.5}))
    (tmp_path / "report.json").write_text(json.dumps({"final": {"accuracy": 0.9}}))
    assert dc.finished_item(tmp_path, spec)["bench_cpu_s"] == 12.5
    # a relabelled row (its name) or fewer timed invocations compute the same run
    assert dc.finished_item(tmp_path, {**spec, "name": "renamed", "latency_runs": 3}) is not None
    # anything that changes what the run computes trains it again
    assert dc.finished_item(tmp_path, {**spec, "export": "int8_dynamic"}) is None
    assert dc.finished_item(tmp_path, {**spec, "baseline": {"arch": "lenet_300_100", "seed": 1}}) is None
