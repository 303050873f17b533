"""Every quick study of examples/studies/ runs from the command line with the real engine on digits
(``python -m compression study SPEC --out DIR``), and what it writes holds up: sizes and sparsities
read from the files, LiteRT's accuracy on the clean test split equal to the run's own, a lottery's
masks nested round after round, the suggested recipe valid; run again, a study reuses its runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compression.cli import main as cli
from compression.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "studies"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a loaded machine: six runs can take minutes


def run(kind: str, out: Path, *extra: str) -> dict:
    code = cli.main(["study", str(EXAMPLES / f"quick_{kind}.json"), "--out", str(out), "--quiet", *extra])
    record = json.loads((out / "study.json").read_text())
    assert code == 0, record.get("error")
    assert record["state"] == "succeeded" and record["progress"]["done"] == len(record["runs"])
    for e in record["runs"]:
        assert (out / e["run"] / "report.json").is_file()  # an ordinary run folder
    return record


def report(out: Path, record: dict, key: str) -> dict:
    run = next(e["run"] for e in record["runs"] if e["key"] == key)
    return json.loads((out / run / "report.json").read_text())


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


def test_the_quick_sensitivity_study_writes_its_suggested_recipe(tmp_path):
    out = tmp_path / "sensitivity"
    record = run("sensitivity", out, "--write-recipe", str(tmp_path / "suggested.json"))
    assert [layer["name"] for layer in record["layers"]] == ["fc1", "fc2", "output"]
    recipe = Recipe.load(tmp_path / "suggested.json")
    if record["suggested"]:
        assert recipe.steps[0].final_sparsity.as_dict() == record["suggested"]
        assert record["suggestion"]["predicted_drop_pts"] <= record["suggestion"]["max_drop_pts"] + 1e-9


def test_the_quick_robustness_study_runs_the_exported_files(tmp_path):
    out = tmp_path / "robustness"
    record = run("robustness", out)
    clean = record["corruptions"][0]
    assert clean["name"] == "clean"
    # LiteRT on the clean split agrees with each run's own measurement of its exported file
    assert clean["baseline_accuracy"] == pytest.approx(report(out, record, "baseline")["final"]["accuracy"], abs=1e-6)
    assert clean["compressed_accuracy"] == pytest.approx(report(out, record, "compressed")["final"]["accuracy"], abs=1e-6)
    names = {r["name"] for r in record["corruptions"][1:]}
    assert names == {"gaussian_noise", "blur", "contrast", "brightness", "rotation", "zoom", "jpeg"}
    assert all(1 <= r["severity"] <= 3 for r in record["corruptions"][1:])
