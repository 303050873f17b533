"""Study kinds without TensorFlow: every kind keeps the contract (declared fields, one-line refusals,
a cost, a plan of valid recipes), the statistics match scipy's, the corruptions are what they say,
and each kind's plan and aggregate work on run folders written here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

import compression  # noqa: F401
from compression import studies
from compression.errors import RecipeError
from compression.recipe import Recipe
from compression.studies import corruptions, stats
from compression.studies.driver import advance, worker_lost
from compression.studies.kind import Outcome, Results
from compression.studies.kinds.sensitivity import suggest, suggested_recipe
from compression.studies.kinds.sweep import redundancy_threshold
from compression.studies.record import new_record, new_study_id, recipe_hash

ROOT = Path(__file__).resolve().parents[1]
BASE = {"dataset": "digits", "baseline": {"arch": "lenet_300_100", "epochs": 1}}


def spec(kind: str, **kw):
    return studies.parse_spec({"kind": kind, **BASE, **kw})


# --- the contract, for every registered kind -------------------------------------------------------------


def test_the_five_kinds_are_registered():
    assert studies.names() == ["sweep", "sensitivity", "lottery", "forgetting", "robustness"]


@pytest.mark.parametrize("name", ["sweep", "sensitivity", "lottery", "forgetting", "robustness"])
def test_each_kind_declares_its_fields_refuses_bad_values_in_one_line_and_plans_valid_recipes(name):
    kind = studies.get(name)
    described = kind.describe()
    assert described["help"] and described["title"]
    for field, p in described["params"].items():
        assert p["help"], f"{name}.{field} has no help"
        bad = {"float": 1e9, "int": -3, "bool": "yes", "enum": "nonsense", "name": "nonsense", "names": ["nonsense"],
               "float_list": [], "text": 7, "object": [1]}[p["kind"]]
        if p["kind"] == "float" and p.get("max", 1e12) >= 1e9:
            bad = -1.0
        if p["kind"] == "names" and "choices" not in p:
            bad = "x\n"
        with pytest.raises(RecipeError) as info:
            spec(name, **{field: bad})
        text = str(info.value)
        assert "\n" not in text and text.startswith(field), text
    with pytest.raises(RecipeError, match="^not_a_field: unknown field"):
        spec(name, not_a_field=1)
    s = spec(name)
    assert studies.parse_spec(s.to_dict()) == s  # round trip
    cost = kind.cost(s)
    assert cost.text and (cost.runs is None or cost.runs >= 2)
    first = kind.plan(s, Results({}))
    assert first and all(isinstance(Recipe.from_dict(p.recipe), Recipe) for p in first)
    assert len({p.key for p in first}) == len(first)


def test_a_spec_needs_a_kind_a_dataset_and_a_baseline_and_names_the_field():
    for data, field in [({}, "kind"), ({"kind": "nope"}, "kind"), ({"kind": "sweep"}, "dataset"),
                        ({"kind": "sweep", "dataset": "digits"}, "baseline"),
                        ({"kind": "sweep", **BASE, "levels": [0.5, 0.5]}, "levels"),
                        ({"kind": "sweep", **BASE, "method": "cluster", "levels": [16, 2.5]}, "levels[1]"),
                        ({"kind": "forgetting", "dataset": "digits", "baseline": {"path": "m.keras"}}, "baseline"),
                        ({"kind": "sweep", "dataset": {"npz": "nowhere.npz"}, "baseline": {"arch": "lenet_300_100"}},
                         "dataset.npz")]:
        with pytest.raises(RecipeError) as info:
            studies.parse_spec(data, base_dir="/tmp")
        assert str(info.value).startswith(field), (data, str(info.value))


def test_relative_paths_in_a_spec_are_taken_from_its_folder(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"x")
    s = studies.parse_spec({"kind": "sweep", "dataset": {"npz": "d.npz"}, "baseline": {"arch": "lenet_300_100"}},
                           base_dir=tmp_path)
    assert s.dataset.npz == str(tmp_path / "d.npz")


def test_the_command_line_lists_the_kinds_and_refuses_a_bad_spec_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "compression", "studies", "--json"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0 and [k["kind"] for k in json.loads(out.stdout)["kinds"]] == studies.names()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "lottery", **BASE, "rate": 1.5}))
    out = subprocess.run([sys.executable, "-m", "compression", "study", str(bad), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and out.stderr == "error: rate: 1.5 is outside (0, 1)\n"
    assert not (tmp_path / "o").exists()
    bad.write_text(json.dumps({"kind": "sweep", **BASE}))
    out = subprocess.run([sys.executable, "-m", "compression", "study", str(bad), "--out", str(tmp_path / "o"),
                          "--write-recipe", "r.json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "only a sensitivity study" in out.stderr


# --- statistics ---------------------------------------------------------------------------------------------


def test_welch_matches_scipy_and_says_when_it_is_undefined():
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(1)
    for n, m in [(2, 2), (5, 5), (5, 30), (30, 7)]:
        a, b = rng.normal(0, 1, n), rng.normal(0.7, 2.5, m)
        t, p = stats.welch(a, b)
        ref = ttest_ind(a, b, equal_var=False)
        assert t == pytest.approx(ref.statistic, rel=1e-9) and p == pytest.approx(ref.pvalue, rel=1e-7)
    assert stats.welch([1, 1, 1], [1, 1, 1]) == (None, None)
    assert stats.welch([1, 1, 1], [0, 0, 0]) == (math.inf, 0.0)
    assert stats.welch([1], [0, 1]) == (None, None)


def test_the_corrections_match_their_definitions():
    from scipy.stats import false_discovery_control

    ps = [0.01, 0.04, 0.03, 0.2, None, 0.001]
    assert stats.adjust(ps, "none") == ps
    assert stats.adjust(ps, "bonferroni") == [0.05, 0.2, 0.15, 1.0, None, 0.005]
    holm = stats.adjust(ps, "holm")  # sorted 0.001, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1, kept monotone
    assert holm[4] is None
    assert [holm[i] for i in (5, 0, 2, 1, 3)] == pytest.approx([0.005, 0.04, 0.09, 0.09, 0.2])
    bh = stats.adjust(ps, "bh")
    ref = false_discovery_control([p for p in ps if p is not None])
    assert [x for x in bh if x is not None] == pytest.approx(list(ref))


def test_modal_labels_take_the_most_frequent_and_the_largest_on_a_tie():
    preds = np.array([[1, 2, 3, 0], [2, 2, 0, 0], [1, 0, 3, 4], [2, 5, 0, 4]])
    assert stats.modal_labels(preds, 6).tolist() == [2, 2, 3, 4]


# --- corruptions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", corruptions.names())
def test_each_corruption_keeps_the_shape_and_range_and_grows_with_severity(name):
    rng = np.random.default_rng(0)
    x = np.zeros((6, 12, 12), dtype=np.float32)
    x[:, 3:9, 5:7] = 1.0  # a bar: blur, rotation, zoom and JPEG all move it
    x += 0.05 * rng.random(x.shape).astype(np.float32)
    changes = []
    for severity in (1, 3, 5):
        y = corruptions.corrupt(x, name, severity, seed=0)
        assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
        np.testing.assert_array_equal(y, corruptions.corrupt(x, name, severity, seed=0))  # deterministic
        changes.append(float(np.abs(y - x).mean()))
    assert 0 < changes[0] < changes[2], (name, changes)
    rgb = corruptions.corrupt(np.stack([x] * 3, axis=-1), name, 2)
    assert rgb.shape == (6, 12, 12, 3)


# --- plans and aggregates on run folders written here -----------------------------------------------------


def write_run(folder: Path, *, accuracy: float, sparsity: float = 0.0, preds=None, y=None, stages=(),
              layers=None, n_classes: int = 3) -> Path:
    folder.mkdir(parents=True)
    report = {"final": {"accuracy": accuracy, "sparsity": sparsity, "tflite_zip_bytes": int(1000 * (1 - sparsity) + 10),
                        "dc_bytes": int(500 * (1 - sparsity) + 10), "layers": layers or []},
              "baseline": {"metrics": {"layers": layers or []}}, "stages": list(stages),
              "dataset": {"num_classes": n_classes, "class_names": [f"c{i}" for i in range(n_classes)]},
              "artifacts": {"predictions": "predictions.npz", "baseline": "baseline.keras", "keras": "model.keras"}}
    (folder / "report.json").write_text(json.dumps(report))
    for name in ("baseline.keras", "model.keras"):
        (folder / name).write_bytes(b"x")
    if preds is not None:
        np.savez(folder / "predictions.npz", y_true=y, final_pred=preds, baseline_pred=y)
    return folder


def results(folders: dict[str, Path]) -> Results:
    return Results({k: Outcome(k, "succeeded", v, None, v.name) for k, v in folders.items()})


def test_a_sweep_plans_its_levels_after_the_baseline_and_finds_the_threshold(tmp_path):
    s = spec("sweep", levels=[0.5, 0.9, 0.95])
    assert [p.key for p in studies.get("sweep").plan(s, Results({}))] == ["baseline"]
    runs = {"baseline": write_run(tmp_path / "b", accuracy=0.95)}
    planned = studies.get("sweep").plan(s, results(runs))
    assert [p.key for p in planned] == ["baseline", "level-0.5", "level-0.9", "level-0.95"]
    step = planned[1].recipe["steps"][0]
    assert step["final_sparsity"] == 0.5 and step["initial_sparsity"] == 0.5  # lowered to the level
    assert planned[1].recipe["baseline"] == {"path": str(tmp_path / "b" / "baseline.keras"), "seed": 0}
    for level, acc in ((0.5, 0.951), (0.9, 0.945), (0.95, 0.90)):
        runs[f"level-{level:g}"] = write_run(tmp_path / f"l{level}", accuracy=acc, sparsity=level)
    agg = studies.get("sweep").aggregate(s, results(runs)).fields
    assert [p["measured"] for p in agg["points"]] == [0.5, 0.9, 0.95]
    assert agg["threshold"]["level"] == 0.9 and agg["threshold"]["tolerance_pts"] == 1.0


def test_the_threshold_is_where_accuracy_first_falls_off_not_a_lucky_stronger_point():
    pts = [{"level": lv, "measured": lv, "accuracy": a} for lv, a in ((0.5, 0.95), (0.8, 0.90), (0.9, 0.95))]
    assert redundancy_threshold(pts, 0.95, 1.0, +1)["level"] == 0.5
    clusters = [{"level": c, "measured": c, "accuracy": a} for c, a in ((64, 0.95), (8, 0.948), (2, 0.5))]
    assert redundancy_threshold(clusters, 0.95, 1.0, -1)["level"] == 8  # fewer clusters is stronger
    assert redundancy_threshold(clusters, 0.99, 1.0, -1)["level"] is None


def test_sensitivity_suggests_the_most_weights_within_the_drop_budget():
    layers = [{"name": "big", "weights": 1000, "points": [{"sparsity": 0.5, "accuracy": 0.95},
                                                          {"sparsity": 0.9, "accuracy": 0.94}]},
              {"name": "small", "weights": 10, "points": [{"sparsity": 0.5, "accuracy": 0.945},
                                                          {"sparsity": 0.9, "accuracy": 0.95}]}]
    # big at 0.9 costs 1 point; small costs 0.5 at 0.5 and (never shrinking) 0.5 at 0.9
    assert suggest(layers, 0.95, 1.0) == ({"big": 0.9}, pytest.approx(1.0), 900)
    assert suggest(layers, 0.95, 1.5) == ({"big": 0.9, "small": 0.9}, pytest.approx(1.5), 909)
    assert suggest(layers, 0.95, 0.4) == ({"big": 0.5}, 0.0, 500)
    recipe = suggested_recipe({"spec": {"name": "s", "dataset": "digits", "epochs": 1, "export": "float32"},
                               "baseline": {"model": "/m/baseline.keras"}, "suggested": {"big": 0.9, "small": 0.5}})
    r = Recipe.from_dict(recipe)
    assert r.steps[0].final_sparsity.as_dict() == {"big": 0.9, "small": 0.5} and r.baseline.path == "/m/baseline.keras"


def test_a_lottery_plans_round_by_round_from_the_previous_ticket(tmp_path):
    s = spec("lottery", rounds=3)
    kind = studies.get("lottery")
    runs = {"baseline": write_run(tmp_path / "b", accuracy=0.97)}
    keys = [p.key for p in kind.plan(s, results(runs))]
    assert keys == ["baseline", "ticket/1", "reinit/1", "random/1"]
    stop = {"stats": {"early_stop": {"iteration": 300, "iterations": 900}}}
    runs["ticket/1"] = write_run(tmp_path / "t1", accuracy=0.98, sparsity=0.2, stages=[stop])
    planned = {p.key: p for p in kind.plan(s, results(runs))}
    assert {"ticket/2", "reinit/2", "random/2"} <= set(planned) and "ticket/3" not in planned
    assert planned["reinit/2"].recipe["baseline"]["path"] == str(tmp_path / "t1" / "model.keras")
    assert planned["reinit/2"].recipe["steps"][0]["control"] == "reinit"
    for r in (1, 2, 3):
        for i, net in enumerate(("ticket", "reinit", "random")):
            runs.setdefault(f"{net}/{r}", write_run(tmp_path / f"{net}{r}", accuracy=0.98 - 0.01 * i * r,
                                                    sparsity=1 - 0.8 ** r, stages=[stop]))
    rounds = kind.aggregate(s, results(runs)).fields["rounds"]
    assert [r["remaining"] for r in rounds] == pytest.approx([1.0, 0.8, 0.64, 0.512])
    assert rounds[3]["reinit_accuracy"] == pytest.approx(0.95) and rounds[3]["random_mask_accuracy"] == pytest.approx(0.92)
    assert rounds[2]["early_stop_iteration"] == 300 and rounds[0]["early_stop_iteration"] is None


def test_forgetting_flags_the_class_the_compressed_population_forgets_and_counts_its_pies(tmp_path, monkeypatch):
    s = spec("forgetting", seeds=4, levels=[0.9], p_threshold=0.05, correction="bonferroni")
    kind = studies.get("forgetting")
    y = np.repeat(np.arange(3), 40)
    rng = np.random.default_rng(0)
    runs = {}
    for i in range(4):
        base = np.where(rng.random(120) < 0.95, y, (y + 1) % 3)
        runs[f"seed-{i}/baseline"] = write_run(tmp_path / f"b{i}", accuracy=float((base == y).mean()), preds=base, y=y)
        comp = base.copy()
        lost = np.flatnonzero(y == 2)[: 20 + i]  # class 2 forgets about half its samples in every model
        comp[lost] = 0
        runs[f"seed-{i}/level-0.9"] = write_run(tmp_path / f"c{i}", accuracy=float((comp == y).mean()), preds=comp, y=y)
    monkeypatch.setattr("compression.studies.kinds.forgetting.gallery_images", lambda spec, idx: {})
    agg = kind.aggregate(s, results(runs))
    level = agg.fields["levels"][0]
    by = {c["class"]: c for c in level["classes"]}
    # class 2 loses half its recall; 0 and 1 keep theirs while the model loses 17 points: spared, significantly
    assert by["c2"]["recall_change"] < -0.4 and by["c2"]["normalised_change"] < -0.3
    assert by["c0"]["recall_change"] == 0 and by["c0"]["normalised_change"] > 0.1
    assert level["forgotten_classes"] == ["c2"] and "c2" in level["significant_classes"]
    assert level["pie_count"] >= 20 and set(level["pie_indices"]) <= set(np.flatnonzero(y == 2).tolist())
    assert level["pie_accuracy"]["compressed"] < 0.2 < level["pie_accuracy"]["baseline"]
    assert agg.fields["test"]["correction"] == "bonferroni"
    assert len(agg.arrays["level-0.9/index"]) == min(32, level["pie_count"])


# --- the driver: a study moved on by whoever calls it --------------------------------------------------------


class FakeBackend:
    """Runs nothing: each started run is written at once (succeeded) unless told to fail it."""

    def __init__(self, root: Path, fail: dict | None = None):
        self.root, self.fail, self.started = root, dict(fail or {}), []

    def start(self, key, recipe, study_id):
        ref = f"r{len(self.started)}"
        self.started.append((key, recipe))
        write_run(self.root / ref, accuracy=0.9 if key != "baseline" else 0.95,
                  sparsity=recipe["steps"][0].get("final_sparsity", 0) if recipe["steps"] else 0)
        return ref, False

    def outcome(self, ref):
        key = self.started[int(ref[1:])][0]
        if key in self.fail:
            return Outcome("", "failed", self.root / ref, self.fail.pop(key), ref)
        return Outcome("", "succeeded", self.root / ref, None, ref)

    def run_dir(self, ref):
        return self.root / ref

    def cancel(self, ref, study_id):
        pass


def test_the_driver_starts_what_the_plan_allows_then_aggregates(tmp_path):
    s = spec("sweep", levels=[0.5, 0.8])
    record = new_record(new_study_id(), s, studies.cost(s))
    backend = FakeBackend(tmp_path)
    step = advance(record, backend)
    assert [k for k, _ in backend.started] == ["baseline"] and step.record["state"] == "running"
    step = advance(step.record, backend)
    assert [k for k, _ in backend.started] == ["baseline", "level-0.5", "level-0.8"]
    step = advance(step.record, backend)
    assert step.record["state"] == "succeeded" and step.record["progress"] == {"done": 3, "planned": 3, "active": 0}
    assert [p["level"] for p in step.record["points"]] == [0.5, 0.8]
    assert all(e["recipe_hash"] == recipe_hash(r) for e, (_, r) in zip(step.record["runs"], backend.started))


def test_a_run_lost_with_its_worker_starts_again_and_any_other_failure_fails_the_study(tmp_path):
    s = spec("sweep", levels=[0.5])
    lost = "the worker running this job stopped unexpectedly (killed or out of memory) during baseline"
    assert worker_lost(lost) and not worker_lost("steps[0].final_sparsity: bad")
    backend = FakeBackend(tmp_path / "a", {"baseline": lost})
    record = advance(new_record(new_study_id(), s, studies.cost(s)), backend).record
    record = advance(record, backend).record
    assert record["state"] == "running" and record["retries"] == {"baseline": 2}
    backend = FakeBackend(tmp_path / "b", {"baseline": "ValueError: boom"})
    record = advance(new_record(new_study_id(), s, studies.cost(s)), backend).record
    assert record["state"] == "failed" and record["error"] == "run baseline (r0) failed: ValueError: boom"


def test_identical_recipes_hash_alike_whatever_their_name():
    r = Recipe.from_dict({"name": "a", **BASE, "steps": []}).to_dict()
    assert recipe_hash(r) == recipe_hash(dict(r, name="b", latency_runs=3))
    assert recipe_hash(r) != recipe_hash(dict(r, baseline=dict(r["baseline"], seed=1)))


def test_every_spec_field_has_a_widget_kind_the_page_knows():
    known = {"float", "int", "bool", "enum", "name", "names", "float_list", "text", "object"}
    for kind in studies.all_kinds():
        for f in fields(kind.spec_type):
            if "param" in f.metadata:
                assert f.metadata["param"].kind in known, (kind.name, f.name)
