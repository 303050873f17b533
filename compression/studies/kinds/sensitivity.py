"""Sensitivity: prune one layer at a time, the others dense, at each sparsity of a list.

A baseline run, then one run per layer and sparsity (Distiller's sensitivity analysis, on exported
files). One curve per layer; from the curves, per-layer sparsity targets that keep the total
accuracy drop within ``max_drop_pts`` while removing the most weights. The choice treats the layers'
drops as adding up (each measured with the other layers dense), smooths each curve so a drop never
shrinks as sparsity grows (the largest drop at that sparsity or below), and picks one sparsity per
layer (or none) by an exact knapsack over drops in steps of 0.01 points. The suggestion becomes a
recipe with pruning's per-layer targets (``final_sparsity: {layer: value}``).
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.errors import RecipeError
from compression.recipe.params import param
from compression.studies.kind import (
    Aggregate, Cost, Planned, Results, StudyError, StudyKind, StudySpec, baseline_epochs, check_recipe,
    method_strength, number, step_at,
)

METHOD = "prune"  # the kind is pruning sensitivity by definition
RESOLUTION_PTS = 0.01


@dataclass(frozen=True)
class SensitivitySpec(StudySpec):
    kind = "sensitivity"

    sparsities: tuple = param((0.5, 0.7, 0.8, 0.9, 0.95, 0.98), "the sparsities each layer is pruned to, one run "
                              "each", kind="float_list", lo=0, hi=1, hi_open=True, max_items=16)
    layers: tuple | None = param(None, "the layers to test; null: every layer with weights", kind="names",
                                 nullable=True, max_items=200)
    epochs: int = param(1, "fine-tuning epochs of each run", lo=1, hi=1000, unit="epochs", label="Fine-tuning epochs")
    max_drop_pts: float = param(1.0, "the suggested per-layer targets keep the total accuracy drop within this "
                                "many percentage points", lo=0, hi=100, unit="points",
                                label="Accuracy drop allowed (points)")

    def check(self) -> None:
        method, name = method_strength(METHOD, None)
        for i, s in enumerate(self.sparsities):
            step_at(method, name, s, {"epochs": self.epochs, "layers": {"names": ["layer"]}}, f"sparsities[{i}]")


def layer_names(results: Results, wanted: tuple | None) -> list[str]:
    """The baseline's layers with weights (in model order), or the chosen ones (checked against them)."""
    rows = ((results.report("baseline").get("baseline") or {}).get("metrics") or {}).get("layers") or []
    names = [r.get("name") for r in rows if isinstance(r, dict) and isinstance(r.get("name"), str)]
    if not wanted:
        return names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise RecipeError("layers", f"no layer with weights named {unknown[0]!r}; the baseline's: {', '.join(names)}")
    return [n for n in names if n in wanted]


def layer_weights(results: Results) -> dict[str, int]:
    """Parameters per layer with weights (kernel and bias), from the baseline's exported file."""
    out = {}
    for row in results.final("baseline").get("layers") or []:
        n, params = row.get("name"), number(row.get("params"))
        if isinstance(n, str) and params is not None:
            out[n] = int(params)
    return out


def key(layer: str, sparsity: float) -> str:
    return f"{layer}/{sparsity:g}"


class Sensitivity(StudyKind):
    name = "sensitivity"
    rank = 20
    title = "Layer sensitivity"
    help = ("Prune one layer at a time (the others dense) at each sparsity of a list: one accuracy curve per "
            "layer, and per-layer sparsity targets that keep a chosen total accuracy drop while removing the most "
            "weights, written into a new recipe.")
    spec_type = SensitivitySpec

    def cost(self, spec: SensitivitySpec) -> Cost:
        per = len(spec.sparsities)
        if spec.layers:
            runs = 1 + per * len(spec.layers)
            epochs = baseline_epochs(spec) + (runs - 1) * spec.epochs
            return Cost(runs, epochs, f"{runs} runs (a baseline and {per} per layer), {epochs} training epochs")
        return Cost(None, None, f"1 + {per} runs per layer with weights (a baseline, then {per} sparsities for "
                                f"each layer), {spec.epochs} fine-tuning epochs each; the layers are read from the "
                                "baseline")

    def plan(self, spec: SensitivitySpec, results: Results) -> list[Planned]:
        out = [Planned("baseline", spec.recipe("baseline", []), "baseline", {})]
        if not results.done("baseline"):
            return out
        method, name = method_strength(METHOD, None)
        base = results.loaded_baseline("baseline")
        for layer in layer_names(results, spec.layers):
            for i, s in enumerate(spec.sparsities):
                step = step_at(method, name, s, {"epochs": spec.epochs, "layers": {"names": [layer]}},
                               f"sparsities[{i}]")
                recipe = spec.recipe(f"{layer} at {s:g}", [step], base, spec.seed)
                check_recipe(recipe, f"sparsities[{i}]")
                out.append(Planned(key(layer, s), recipe, f"{layer} {s:g}", {"layer": layer, "sparsity": s}))
        return out

    def aggregate(self, spec: SensitivitySpec, results: Results) -> Aggregate:
        base_acc = results.accuracy("baseline")
        weights = layer_weights(results)
        layers = []
        for layer in layer_names(results, spec.layers):
            points = []
            for s in spec.sparsities:
                k = key(layer, s)
                row = next((r for r in results.final(k).get("layers") or [] if r.get("name") == layer), {})
                points.append({"sparsity": s, "measured": number(row.get("sparsity")), "accuracy": results.accuracy(k),
                               "run": results.ref(k)})
            layers.append({"name": layer, "weights": weights.get(layer), "points": points})
        suggested, predicted, removed = suggest(layers, base_acc, spec.max_drop_pts)
        total = sum(l["weights"] or 0 for l in layers)
        return Aggregate({
            "baseline": {"accuracy": base_acc, "run": results.ref("baseline"),
                         "model": str(results.artifact("baseline", "baseline"))},
            "layers": layers, "suggested": suggested,
            "suggestion": {"max_drop_pts": spec.max_drop_pts, "predicted_drop_pts": round(predicted, 4),
                           "removed_weights": removed, "total_weights": total,
                           "sparsity": round(removed / total, 6) if total else None,
                           "rule": ("the most weights removed, one tested sparsity per layer (or none), with the "
                                    "layers' accuracy drops (each measured alone, never shrinking as sparsity grows) "
                                    f"adding up to at most {spec.max_drop_pts:g} points")}})


def suggest(layers: list[dict], baseline_accuracy: float, max_drop_pts: float) -> tuple[dict, float, int]:
    """({layer: sparsity}, predicted drop in points, weights removed): an exact multiple-choice knapsack."""
    budget = int(round(max_drop_pts / RESOLUTION_PTS))
    options = []
    for layer in layers:
        n = int(layer.get("weights") or 0)
        worst, opts = 0.0, [(0.0, 0, 0.0)]
        for p in sorted(layer["points"], key=lambda p: p["sparsity"]):
            drop = max(0.0, (baseline_accuracy - p["accuracy"]) * 100.0)
            worst = max(worst, drop)  # never shrinks as sparsity grows
            cost = int(round(worst / RESOLUTION_PTS))
            if cost <= budget:
                opts.append((p["sparsity"], cost, worst))
        options.append((layer["name"], n, opts))
    # best[b] = (weights removed, choices) using at most b units of drop
    best: list[tuple[float, tuple]] = [(0.0, ())] * (budget + 1)
    for name, n, opts in options:
        new = []
        for b in range(budget + 1):
            cand = None
            for s, cost, worst in opts:
                if cost > b:
                    continue
                removed, chosen = best[b - cost]
                value = removed + s * n
                if cand is None or value > cand[0] + 1e-9:
                    cand = (value, chosen + ((name, s, worst),))
            new.append(cand)
        best = new
    removed, chosen = best[budget]
    if not chosen and layers:
        raise StudyError("the sensitivity study has no layer curves to suggest from")
    suggested = {name: s for name, s, _ in chosen if s > 0}
    predicted = sum(w for _, s, w in chosen if s > 0)
    return suggested, predicted, int(round(removed))


def suggested_recipe(study: dict, epochs: int | None = None) -> dict:
    """A recipe that prunes the baseline to the suggested per-layer sparsities (pruning's per-layer targets)."""
    spec = study.get("spec") or {}
    suggested = study.get("suggested") or {}
    if not suggested:
        raise StudyError("the study suggests no pruning: every layer's drop is over the budget at its lowest "
                         "sparsity; raise max_drop_pts")
    epochs = epochs or max(2, int(spec.get("epochs") or 1))
    base = (study.get("baseline") or {}).get("model")
    baseline = {"path": base, "seed": spec.get("seed", 0)} if base else spec.get("baseline")
    step = {"method": METHOD, "schedule": "polynomial_decay", "initial_sparsity": 0.0,
            "final_sparsity": dict(suggested), "layers": {"names": sorted(suggested)}, "epochs": epochs}
    name = f"{spec.get('name', 'sensitivity')} suggested"
    return {"name": name[:100], "dataset": spec.get("dataset"), "max_train_samples": spec.get("max_train_samples"),
            "baseline": baseline, "steps": [step], "export": spec.get("export", "float32")}


STUDY = Sensitivity()

__all__ = ["STUDY", "Sensitivity", "SensitivitySpec", "suggest", "suggested_recipe"]
