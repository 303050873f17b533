"""The extreme-quantization benchmark: --quick runs every kind of row end to end from its files (its own
file, so that the two benchmark tests run on different workers)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


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
    # run again on the same workspace: every run is reused (nothing trains), the same table comes out
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": reused ") == 8 and " CPU s, error" not in again.stdout.replace("when it ran", "")
    rerun = json.loads((tmp_path / "bench_quant_noise.json").read_text())
    assert rerun["groups"][0]["rows"] == result["groups"][0]["rows"]
    assert len({j.id for j in list_jobs(home)}) == 8
