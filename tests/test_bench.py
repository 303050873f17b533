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
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "deep_compression.py"), "--quick", "--out", str(out),
                           "--runs", str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=900,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    result = json.loads(out.with_suffix(".json").read_text())
    rows = result["rows"]

    assert "Quick mode" in text and "bench/deep_compression.py --quick" in text and "Load average" in text
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
        ref = next(r for r in rows if r["group"] == group and r["label"] == "baseline, float32 TFLite")
        ptq = next(r for r in rows if r["group"] == group and r["label"].startswith("baseline, post-training"))
        preset = next(r for r in rows if r["group"] == group and r["label"].startswith("Deep Compression preset"))
        assert 2.5 < ptq["tflite_x"] < 4.5  # int8 weights: about a quarter of float32, plus the graph
        # pruned and clustered: the container beats zip, and both beat the int8 file of the baseline
        assert preset["dc_bytes"] < preset["tflite_zip_bytes"] < ptq["tflite_bytes"]
        assert preset["dc_x"] > ptq["dc_x"]


def test_quick_quant_noise_benchmark_reads_every_row_from_its_files(tmp_path):
    from compression.jobs import list_jobs

    out = tmp_path / "bench.md"
    out.write_text("# Benchmarks\n\nsomeone else's section\n")
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "COMPRESSION_LATENCY_WAIT_S": "0"}
    cmd = [sys.executable, str(ROOT / "bench" / "quant_noise.py"), "--quick", "--out", str(out), "--home", str(home)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nsomeone else's section\n")  # the rest of the file is left alone
    assert text.count("<!-- quant-noise:start -->") == 1 and "Quick mode" in text
    result = json.loads((tmp_path / "bench_quant_noise.json").read_text())
    rows = {r["key"]: r for r in result["groups"][0]["rows"]}
    assert set(rows) == {"float", "int8_none", "int4_none", "int4_qat", "int4_quant_noise", "int2_quant_noise", "ipq",
                         "ipq_quant_noise"}
    for key, r in rows.items():
        assert 0 <= r["error_pct"] <= 60, (key, r)  # digits in a few epochs: far better than chance (90%)
        assert r["label"] in text
        assert r["dc_bytes"] > 0 and r["tflite_zip_bytes"] > 0
    # levels per output channel read back from the files, and the int4 file where a step asks for <= 4 bits
    assert rows["int4_qat"]["distinct_per_channel"] <= 15 and rows["int2_quant_noise"]["distinct_per_channel"] <= 3
    assert rows["int4_qat"]["int4_bytes"] and not rows["int8_none"]["int4_bytes"]
    # smaller weights, smaller model.dc; iPQ's codes and codebooks beat int8
    assert rows["float"]["dc_bytes"] > rows["int8_none"]["dc_bytes"] > rows["int4_none"]["dc_bytes"] \
        > rows["int2_quant_noise"]["dc_bytes"]
    assert rows["ipq"]["dc_bytes"] < rows["int8_none"]["dc_bytes"]
    assert "4 bits: Quant-Noise" in text  # the verdict against QAT is written
    # the runs are finished jobs of the workspace: the dashboard's Compare lists them
    names = {j.name for j in list_jobs(home) if j.state == "succeeded"}
    assert len(names) == 8 and any("iPQ + Quant-Noise" in n for n in names)
