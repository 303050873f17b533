"""What compression forgets (Hooker et al.): populations of baseline and compressed models compared.

``seeds`` baselines (the spec's baseline trained with seeds seed, seed+1, ...), and from each one a
compressed model at every level (pruning's final sparsity by default). For each level and class:
the change in mean recall, the same change minus the change in overall accuracy (a class is hit
harder than the model when it is negative), and the two-sided Welch t-test p-value of the
normalised recalls across the two populations (compression/studies/stats.py); a class is flagged
when its p-value, adjusted by the chosen multiple-comparison correction, is below ``p_threshold``
(both ways: a class spared while the model loses accuracy is significant too); the flagged classes
with a negative normalised change are the ones compression forgets.
The pruning-identified exemplars (PIEs) of a level are the test samples whose modal label differs
between the two populations; their count, indices and the accuracy of both populations on PIEs
and on the rest are reported, with a gallery of the first ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compression.errors import RecipeError
from compression.recipe import methods
from compression.recipe.params import FrozenDict, param
from compression.studies import stats
from compression.studies.kind import (
    Aggregate, Cost, Planned, Results, StudyKind, StudySpec, check_recipe, level_key, method_strength, step_at,
)

GALLERY = 32  # PIE images kept per level for the gallery


def corrections() -> list[str]:
    return list(stats.CORRECTIONS)


@dataclass(frozen=True)
class ForgettingSpec(StudySpec):
    kind = "forgetting"

    seeds: int = param(5, "models per population: baselines trained with this many seeds, and as many compressed "
                       "models at each level (the paper: 30)", lo=2, hi=30, unit="seeds")
    method: str = param("prune", "the compression method", kind="name", choices=methods.names, advanced=True)
    parameter: str | None = param(None, "the numeric step parameter the levels set; null: the method's declared "
                                  "strength (prune: final_sparsity)", kind="text", nullable=True, advanced=True)
    levels: tuple = param((0.5, 0.9), "the compression levels (prune: sparsities), each a population of compressed "
                          "models", kind="float_list", lo=0, hi=1e6, max_items=8)
    epochs: int = param(2, "fine-tuning epochs of each compressed model", lo=1, hi=1000, unit="epochs",
                        label="Fine-tuning epochs")
    step: FrozenDict = param(FrozenDict(()), "other fields of every compressed model's step", kind="object",
                             advanced=True)
    p_threshold: float = param(0.05, "a class is significantly impacted when its (adjusted) p-value is below this",
                               lo=0, hi=1, lo_open=True, hi_open=True, label="p-value threshold")
    correction: str = param("holm", "the multiple-comparison correction across the classes of a level: none, "
                            "bonferroni, holm (default) or bh (Benjamini-Hochberg)", kind="name",
                            choices=corrections)

    def check(self) -> None:
        if not self.trains_baseline:
            raise RecipeError("baseline", "a forgetting study trains a population of baselines: give "
                                          "{\"arch\": ...} (with its epochs), not a model file")
        method, name = method_strength(self.method, self.parameter)
        for i, level in enumerate(self.levels):
            step_at(method, name, level, self.step_dict(), f"levels[{i}]")

    def step_dict(self) -> dict:
        return {"epochs": self.epochs, **self.step.as_dict()}


def base_key(i: int) -> str:
    return f"seed-{i}/baseline"


def comp_key(i: int, level: float) -> str:
    return f"seed-{i}/{level_key(level)}"


class Forgetting(StudyKind):
    name = "forgetting"
    rank = 40
    title = "What compression forgets"
    help = ("Populations, not one model against another (Hooker et al.): N seeds of the baseline and of the "
            "compressed model at each level; per-class recall change against the overall accuracy change with a "
            "Welch t-test, and the pruning-identified exemplars (PIEs) where the two populations' modal "
            "predictions differ.")
    spec_type = ForgettingSpec

    def cost(self, spec: ForgettingSpec) -> Cost:
        runs = spec.seeds * (1 + len(spec.levels))
        epochs = spec.seeds * (spec.baseline.epochs + len(spec.levels) * spec.epochs)
        return Cost(runs, epochs, f"{runs} runs ({spec.seeds} baselines and {spec.seeds} compressed models at each of "
                                  f"{len(spec.levels)} levels), {epochs} training epochs")

    def plan(self, spec: ForgettingSpec, results: Results) -> list[Planned]:
        method, name = method_strength(spec.method, spec.parameter)
        out = []
        for i in range(spec.seeds):
            seed = spec.seed + i
            out.append(Planned(base_key(i), spec.recipe(f"baseline seed {seed}", [], seed=seed),
                               f"baseline seed {seed}", {"seed": seed, "level": None}))
            if not results.done(base_key(i)):
                continue
            base = results.loaded_baseline(base_key(i))
            for j, level in enumerate(spec.levels):
                step = step_at(method, name, level, spec.step_dict(), f"levels[{j}]")
                recipe = spec.recipe(f"{name} {level:g} seed {seed}", [step], base, seed)
                check_recipe(recipe, f"levels[{j}]")
                out.append(Planned(comp_key(i, level), recipe, f"{level:g} seed {seed}", {"seed": seed, "level": level}))
        return out

    def aggregate(self, spec: ForgettingSpec, results: Results) -> Aggregate:
        base_preds = [results.predictions(base_key(i)) for i in range(spec.seeds)]
        y = base_preds[0]["y_true"].astype(np.int64)
        ds = results.report(base_key(0)).get("dataset") or {}
        k = int(ds.get("num_classes") or (int(y.max()) + 1))
        class_names = [str(c) for c in (ds.get("class_names") or range(k))]
        base = np.stack([p["final_pred"].astype(np.int64) for p in base_preds])
        base_acc = (base == y).mean(axis=1)
        base_rec = np.stack([stats.recalls(y, p, k) for p in base])
        base_modal = stats.modal_labels(base, k)
        levels, arrays = [], {}
        for level in spec.levels:
            comp = np.stack([results.predictions(comp_key(i, level))["final_pred"].astype(np.int64)
                             for i in range(spec.seeds)])
            comp_acc = (comp == y).mean(axis=1)
            comp_rec = np.stack([stats.recalls(y, p, k) for p in comp])
            acc_change = float(comp_acc.mean() - base_acc.mean())
            classes, raw = [], []
            for c in range(k):
                if np.isnan(base_rec[:, c]).all():
                    raw.append(None)
                    continue
                t, p = stats.welch(base_rec[:, c] - base_acc.mean(), comp_rec[:, c] - comp_acc.mean())
                raw.append(p)
            adjusted = stats.adjust(raw, spec.correction)
            for c in range(k):
                if raw[c] is None and np.isnan(base_rec[:, c]).all():
                    continue
                change = float(np.nanmean(comp_rec[:, c]) - np.nanmean(base_rec[:, c]))
                classes.append({"class": class_names[c] if c < len(class_names) else str(c), "index": c,
                                "baseline_recall": round(float(np.nanmean(base_rec[:, c])), 6),
                                "compressed_recall": round(float(np.nanmean(comp_rec[:, c])), 6),
                                "recall_change": round(change, 6), "normalised_change": round(change - acc_change, 6),
                                "p_value": raw[c], "p_adjusted": adjusted[c],
                                "significant": adjusted[c] is not None and adjusted[c] < spec.p_threshold})
            comp_modal = stats.modal_labels(comp, k)
            pie = np.flatnonzero(comp_modal != base_modal)
            rest = np.setdiff1d(np.arange(len(y)), pie)

            def acc_on(preds, idx):
                return None if not len(idx) else round(float((preds[:, idx] == y[idx]).mean()), 6)

            levels.append({
                "level": level, "accuracy_mean": round(float(comp_acc.mean()), 6),
                "accuracy_std": round(float(comp_acc.std(ddof=1)), 6), "accuracy_change": round(acc_change, 6),
                "classes": classes, "significant_classes": [c["class"] for c in classes if c["significant"]],
                # significant and hit harder than the model as a whole: what compression forgets
                "forgotten_classes": [c["class"] for c in classes if c["significant"] and c["normalised_change"] < 0],
                "pie_count": int(len(pie)), "pie_share": round(len(pie) / len(y), 6),
                "pie_indices": [int(i) for i in pie],
                "pie_accuracy": {"baseline": acc_on(base, pie), "compressed": acc_on(comp, pie)},
                "non_pie_accuracy": {"baseline": acc_on(base, rest), "compressed": acc_on(comp, rest)},
                "runs": [results.ref(comp_key(i, level)) for i in range(spec.seeds)]})
            shown = pie[:GALLERY]
            arrays[f"{level_key(level)}/index"] = shown.astype(np.int64)
            arrays[f"{level_key(level)}/baseline_modal"] = base_modal[shown]
            arrays[f"{level_key(level)}/compressed_modal"] = comp_modal[shown]
            arrays[f"{level_key(level)}/true"] = y[shown]
        images = gallery_images(spec, sorted({int(i) for key, a in arrays.items() if key.endswith("/index") for i in a}))
        arrays.update(images)
        method, name = method_strength(spec.method, spec.parameter)
        return Aggregate({
            "method": method.name, "parameter": name, "seeds": spec.seeds, "class_names": class_names,
            "baseline": {"accuracy_mean": round(float(base_acc.mean()), 6),
                         "accuracy_std": round(float(base_acc.std(ddof=1)), 6),
                         "runs": [results.ref(base_key(i)) for i in range(spec.seeds)]},
            "test": {"p_threshold": spec.p_threshold, "correction": spec.correction,
                     "correction_text": stats.CORRECTIONS[spec.correction],
                     "statistic": ("two-sided Welch t-test of the per-model recalls minus the population's mean "
                                   "accuracy, baseline population against compressed population"),
                     "modal_label": "the label most models of a population predict; a tie goes to the largest label"},
            "levels": levels}, arrays)


def gallery_images(spec: ForgettingSpec, index: list[int]) -> dict[str, np.ndarray]:
    """uint8 test images of the gallery samples (``gallery/index`` and ``gallery/images``)."""
    if not index:
        return {}
    from compression.inputs import data

    ds = data.load(spec.dataset)
    idx = np.asarray(index, dtype=np.int64)
    idx = idx[idx < len(ds.x_test)]
    return {"gallery/index": idx, "gallery/images": ds.display_images(idx)}


STUDY = Forgetting()

__all__ = ["Forgetting", "ForgettingSpec", "STUDY"]
