"""The quick sensitivity and robustness studies of examples/studies/, as tests/test_study_examples.py runs
the others (a second file: the two share the workers)."""

from __future__ import annotations

import pytest

from compression.recipe import Recipe
from studyexamples import report, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


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
