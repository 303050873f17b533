"""The clustering speed benchmark: --quick runs every row end to end and writes its table (no timing
thresholds: timings belong to the benchmark, not to tests)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

ROWS = ["float", "cluster64_tfmot", "cluster64_fast", "spcluster64_fast", "pcqat64_tfmot", "pcqat64_fast"]


def test_quick_benchmark_times_every_row_and_writes_its_table(tmp_path):
    out, md = tmp_path / "speed.json", tmp_path / "speed.md"
    md.write_text("old table\n<!-- notes -->\nkept notes\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "cluster_speed.py"), "--quick", "--json", str(out),
                           "--md", str(md)], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == ROWS
    assert result["meta"]["quick"] and result["meta"]["dataset"] == "digits"

    table = md.read_text()
    assert "old table" not in table and table.rstrip().endswith("kept notes")
    assert "| cluster 64 | fast |" in proc.stdout and "| PCQAT 64 | tfmot |" in proc.stdout
    for r in rows.values():
        assert len(r["wall_s"]) == len(r["cpu_s"]) == 1 and r["wall_s_min"] > 0 and r["cpu_s_min"] > 0
        assert r["train_steps"] > 0
        assert r["label"] in table
        if r["path"] == "fast":
            # every fast row was counted and checked against tfmot's argmin
            assert r["assignments_equal"] is True
            assert r["paths"]["calls"] > 0
        else:
            assert r["paths"] is None and r["assignments_equal"] is None
    assert rows["float"]["wall_x"] == pytest.approx(1.0)
