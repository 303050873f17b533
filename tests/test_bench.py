"""The Deep Compression benchmark: --quick runs every row end to end and writes a sane table."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_quick_benchmark_writes_every_row_with_sane_numbers(tmp_path):
    out = tmp_path / "bench.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    bench = [sys.executable, str(ROOT / "bench" / "deep_compression.py"), "--quick", "--runs", str(tmp_path / "runs")]
    # two runs at once, each in its own process (the way the full benchmark is run on 2 cores)
    proc = subprocess.run([*bench, "--out", str(out), "--jobs", "2"], capture_output=True, text=True, env=env,
                          timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    result = json.loads(out.with_suffix(".json").read_text())
    rows = result["rows"]

    assert "Quick mode" in text and "bench/deep_compression.py --quick" in text and "Load average" in text
    assert "Ran 2 runs at once" in text and result["meta"]["jobs"] == 2
    assert "reusing" in proc.stdout  # the parent reads what the two worker processes ran
    # lenet_5_caffe cannot take 8x8 digits: the substitution is said, not hidden
    assert "uses lenet_5" in text
    labels = [r["label"] for r in rows]
    for label in ("baseline, float32 TFLite", "baseline, post-training dynamic int8", "Deep Compression preset",
                  "peer: tfmot prune 90% + cluster 16 + PCQAT", "peer: tfmot pruning tutorial"):
        hits = [r for r in rows if r["label"].startswith(label)]
        assert hits, f"no row {label!r} in {labels}"
        for r in hits:
            assert r["label"] in text
    # both presets, each with the float reference and post-training int8 of its own baseline
    for group in ("lenet_300_100", "lenet_5_caffe"):
        g = [r for r in rows if r["group"] == group]
        assert any(r["label"] == "baseline, float32 TFLite" for r in g)
        assert any(r["label"].startswith("Deep Compression preset") for r in g)

    for r in rows:
        assert 0.0 <= r["error_pct"] <= 60.0, r  # digits in a few epochs: far better than chance (90%)
        assert 0 < r["dc_bytes"] and 0 < r["tflite_zip_bytes"] and 0 < r["tflite_bytes"]
        assert r["latency_ms"] > 0 and r["wall_s"] >= 0 and (r["cpu_s"] is None or r["cpu_s"] > 0)
        if r["label"] == "baseline, float32 TFLite":
            assert r["tflite_x"] == pytest.approx(1.0)
    for group in ("lenet_300_100", "lenet_5_caffe"):
        ptq = next(r for r in rows if r["group"] == group and r["label"].startswith("baseline, post-training"))
        preset = next(r for r in rows if r["group"] == group and r["label"].startswith("Deep Compression preset"))
        assert 2.5 < ptq["tflite_x"] < 4.5  # int8 weights: about a quarter of float32, plus the graph
        # pruned and clustered: the container beats zip, and both beat the int8 file of the baseline
        assert preset["dc_bytes"] < preset["tflite_zip_bytes"] < ptq["tflite_bytes"]
        assert preset["dc_x"] > ptq["dc_x"]

    # run again into the same folder: a finished run of the same recipe is reused, not trained again
    again_out = tmp_path / "again.md"
    first = next(r for r in rows if r["label"].startswith("Deep Compression preset") and r["group"] == "lenet_300_100")
    proc = subprocess.run([*bench, "--out", str(again_out), "--only", "dc_lenet_300_100_s0"], capture_output=True,
                          text=True, env=env, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reusing" in proc.stdout and "running deep_compression" not in proc.stdout
    again = json.loads(again_out.with_suffix(".json").read_text())["rows"]
    preset = next(r for r in again if r["label"] == first["label"])
    assert (preset["error_pct"], preset["dc_bytes"], preset["cpu_s"]) == (first["error_pct"], first["dc_bytes"],
                                                                          first["cpu_s"])
