"""Sweep: one method at a list of strengths, and the redundancy threshold.

A baseline run, then one run per level (the method's declared strength, e.g. pruning's final
sparsity or clustering's clusters per layer, or any numeric parameter named in ``parameter``).
Accuracy of each exported file against the strength measured in it (pruning: the sparsity read
from the file; clustering: the most distinct values in a layer) and against its compressed sizes
(zipped TFLite, model.dc). The redundancy threshold is the strongest setting that keeps the
accuracy within ``tolerance_pts`` of the baseline's, with every weaker setting within it too: the
point past which accuracy falls off.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.recipe import figures, methods
from compression.recipe.choices import ExportMode
from compression.recipe.params import FrozenDict, param
from compression.studies.kind import (
    Aggregate, Cost, Planned, Results, StudyKind, StudySpec, baseline_epochs, check_recipe, level_key,
    method_strength, number, step_at,
)

DEFAULT_LEVELS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)

# How the strength a method establishes is read back from its exported file, and which way is stronger.
MEASURED = {
    "sparsity": ("sparsity read from the file", +1, lambda final: number(final.get("sparsity"))),
    "clusters": ("most distinct values in a layer, read from the file", -1, figures.max_distinct),
}


def measured_figure(method_name: str):
    """(label, direction, reader) for the fact the method establishes, or None (the level stands for itself)."""
    method = methods.get(method_name)
    return next((MEASURED[f] for f in method.establishes if f in MEASURED), None)


@dataclass(frozen=True)
class SweepSpec(StudySpec):
    kind = "sweep"

    method: str = param("prune", "the method to sweep", kind="name", choices=methods.names)
    parameter: str | None = param(None, "the numeric step parameter the levels set; null: the method's declared "
                                  "strength (prune: final_sparsity, cluster: number_of_clusters)", kind="text",
                                  nullable=True, advanced=True)
    levels: tuple = param(DEFAULT_LEVELS, "the strengths to run, one run each (prune: sparsities, cluster: "
                          "clusters per layer, e.g. 256, 64, 16, 8, 4, 2)", kind="float_list", lo=0, hi=1e6,
                          max_items=32)
    epochs: int = param(2, "fine-tuning epochs of each run", lo=1, hi=1000, unit="epochs", label="Fine-tuning epochs")
    step: FrozenDict = param(FrozenDict(()), "other fields of every run's step, e.g. {\"batch_size\": 32}",
                             kind="object", advanced=True)
    tolerance_pts: float = param(1.0, "the redundancy threshold keeps the accuracy within this many percentage "
                                 "points of the baseline's", lo=0, hi=100, unit="points", label="Tolerance (accuracy points)")
    export: ExportMode = param(ExportMode.INT8_DYNAMIC, "how every run exports its file (the sizes on the chart "
                               "are of these files)")

    def check(self) -> None:
        method, name = method_strength(self.method, self.parameter)
        for i, level in enumerate(self.levels):
            step_at(method, name, level, self.step_dict(), f"levels[{i}]")

    def step_dict(self) -> dict:
        return {"epochs": self.epochs, **self.step.as_dict()}


class Sweep(StudyKind):
    name = "sweep"
    rank = 10
    title = "Sweep"
    help = ("One method at a list of strengths (prune at sparsities 0 to 0.99, cluster at 256 to 2 clusters): "
            "accuracy against the measured strength and against the compressed size, with the redundancy "
            "threshold marked, the strongest setting whose accuracy stays within a tolerance of the baseline's.")
    spec_type = SweepSpec

    def cost(self, spec: SweepSpec) -> Cost:
        runs = 1 + len(spec.levels)
        epochs = baseline_epochs(spec) + len(spec.levels) * spec.epochs
        return Cost(runs, epochs, f"{runs} runs (a baseline and {len(spec.levels)} levels), {epochs} training epochs")

    def plan(self, spec: SweepSpec, results: Results) -> list[Planned]:
        out = [Planned("baseline", spec.recipe("baseline", []), "baseline", {"level": None})]
        if not results.done("baseline"):
            return out
        method, name = method_strength(spec.method, spec.parameter)
        base = results.loaded_baseline("baseline")
        for i, level in enumerate(spec.levels):
            step = step_at(method, name, level, spec.step_dict(), f"levels[{i}]")
            recipe = spec.recipe(f"{method.name} {name} {level:g}", [step], base, spec.seed)
            check_recipe(recipe, f"levels[{i}]")
            out.append(Planned(level_key(level), recipe, f"{name} {level:g}", {"level": level}))
        return out

    def aggregate(self, spec: SweepSpec, results: Results) -> Aggregate:
        method, name = method_strength(spec.method, spec.parameter)
        figure = measured_figure(method.name)
        base_acc = results.accuracy("baseline")
        base_final = results.final("baseline")
        points = []
        for level in spec.levels:
            key = level_key(level)
            final = results.final(key)
            points.append({"level": level, "measured": figure[2](final) if figure else None,
                           "accuracy": results.accuracy(key), "tflite_zip_bytes": number(final.get("tflite_zip_bytes")),
                           "dc_bytes": number(final.get("dc_bytes")), "run": results.ref(key)})
        threshold = redundancy_threshold(points, base_acc, spec.tolerance_pts, figure[1] if figure else None)
        return Aggregate({
            "method": method.name, "parameter": name,
            "measured_label": figure[0] if figure else f"{name} as set (the file has no figure for it)",
            "baseline": {"accuracy": base_acc, "tflite_zip_bytes": number(base_final.get("tflite_zip_bytes")),
                         "dc_bytes": number(base_final.get("dc_bytes")), "run": results.ref("baseline")},
            "points": points, "threshold": threshold})


def redundancy_threshold(points: list[dict], baseline_accuracy: float, tolerance_pts: float,
                         direction: int | None) -> dict:
    """The strongest point whose accuracy, and every weaker point's, is within the tolerance of the baseline.

    Points are ordered by their measured strength (``direction`` +1: larger is stronger, -1: smaller is
    stronger), or as listed when the method has no measured figure."""
    if direction is not None and all(p["measured"] is not None for p in points):
        ordered = sorted(points, key=lambda p: direction * p["measured"])
        by = "measured strength"
    else:
        ordered, by = list(points), "the order the levels were given"
    floor = baseline_accuracy - tolerance_pts / 100.0
    best = None
    for p in ordered:
        if p["accuracy"] < floor:
            break
        best = p
    rule = (f"the strongest setting (by {by}) whose accuracy, and every weaker setting's, is at least the baseline's "
            f"{baseline_accuracy:.2%} minus {tolerance_pts:g} points")
    out = {"tolerance_pts": tolerance_pts, "baseline_accuracy": baseline_accuracy, "min_accuracy": floor,
           "rule": rule, "level": None, "measured": None, "accuracy": None}
    if best is not None:
        out.update(level=best["level"], measured=best["measured"], accuracy=best["accuracy"])
    return out


STUDY = Sweep()

__all__ = ["STUDY", "Sweep", "SweepSpec", "measured_figure", "redundancy_threshold"]
