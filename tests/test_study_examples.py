"""Every quick study of examples/studies/ runs from the command line with the real engine on digits
(``python -m compression study SPEC --out DIR``), and what it writes holds up: sizes and sparsities
read from the files, LiteRT's accuracy on the clean test split equal to the run's own, a lottery's
masks nested round after round, the suggested recipe valid; run again, a study reuses its runs."""

from __future__ import annotations


import numpy as np
import pytest

from studyexamples import report, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a loaded machine: six runs can take minutes


def test_the_quick_sweep_and_its_rerun_reusing_every_run(tmp_path):
    out = tmp_path / "sweep"
    record = run("sweep", out)
    for p in record["points"]:
        assert p["measured"] == pytest.approx(p["level"], abs=0.01)  # read from the exported file
        assert p["tflite_zip_bytes"] > 0 and p["dc_bytes"] > 0
    sizes = [p["tflite_zip_bytes"] for p in record["points"]]
    assert sizes == sorted(sizes, reverse=True)
    t = record["threshold"]
    assert t["level"] is None or t["accuracy"] >= record["baseline"]["accuracy"] - 0.01
    written = {e["run"]: (out / e["run"] / "report.json").stat().st_mtime_ns for e in record["runs"]}
    again = run("sweep", out)  # the same folder, the study finished: nothing trains, the same result
    assert again["runs"] == record["runs"] and again["points"] == record["points"]
    assert {e["run"]: (out / e["run"] / "report.json").stat().st_mtime_ns for e in again["runs"]} == written


def test_the_quick_lottery_prunes_inside_the_last_tickets_mask(tmp_path):
    out = tmp_path / "lottery"
    record = run("lottery", out)
    rounds = record["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    # 60% of fc survivors a round (the output layer 30%): remaining falls as the rates say
    assert rounds[1]["remaining"] == pytest.approx(0.4, abs=0.03) and rounds[2]["remaining"] == pytest.approx(0.16, abs=0.03)
    for r in rounds[1:]:
        for net in ("ticket", "reinit", "random_mask"):
            assert 0.5 < r[f"{net}_accuracy"] <= 1
        assert r["early_stop_iteration"] % 20 == 0 or r["early_stop_iteration"] == r["iterations"]
    t1 = report(out, record, "ticket/1")["stages"][0]["stats"]["sparsity"]["per_layer"]
    t2 = report(out, record, "ticket/2")["stages"][0]["stats"]["sparsity"]["per_layer"]
    assert t2["fc1"]["before"] == pytest.approx(t1["fc1"]["achieved"])  # round 2 starts from round 1's mask
    assert t2["output"]["rate"] == pytest.approx(0.3)


def test_the_quick_forgetting_study_tests_every_digit(tmp_path):
    out = tmp_path / "forgetting"
    record = run("forgetting", out)
    [level] = record["levels"]
    assert [c["class"] for c in level["classes"]] == [str(i) for i in range(10)]
    for c in level["classes"]:
        assert c["p_value"] is None or 0 <= c["p_value"] <= 1
    assert level["pie_count"] == len(level["pie_indices"])
    assert record["test"] == {**record["test"], "p_threshold": 0.05, "correction": "holm"}
    arrays = np.load(out / "study.npz")
    assert len(arrays["level-0.8/index"]) == min(32, level["pie_count"])
