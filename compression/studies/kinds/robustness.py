"""Robustness: the baseline's and the compressed model's exported files on corrupted test images.

A baseline run and a compressed run (pruning at ``level`` by default); then both TFLite files are
run with LiteRT on corrupted copies of the test split made on the fly (compression/studies/
corruptions.py: Gaussian noise, blur, contrast, brightness, rotation, zoom, JPEG; ``severities``
of each, mild to strong) and on the clean split. Hooker et al. report that pruned models lose more
under such changes; the gap is the baseline's accuracy minus the compressed model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compression.recipe import methods
from compression.recipe.params import FrozenDict, param
from compression.studies import corruptions as cx
from compression.studies.kind import (
    Aggregate, Cost, Planned, Results, StudyKind, StudySpec, baseline_epochs, check_recipe, method_strength, step_at,
)
from compression.studies.litert import predict_labels


@dataclass(frozen=True)
class RobustnessSpec(StudySpec):
    kind = "robustness"

    method: str = param("prune", "the compression method", kind="name", choices=methods.names, advanced=True)
    parameter: str | None = param(None, "the numeric step parameter the level sets; null: the method's declared "
                                  "strength (prune: final_sparsity)", kind="text", nullable=True, advanced=True)
    level: float = param(0.9, "the compression level of the compressed model (prune: its sparsity)", lo=0, hi=1e6)
    epochs: int = param(2, "fine-tuning epochs of the compressed model", lo=1, hi=1000, unit="epochs",
                        label="Fine-tuning epochs")
    step: FrozenDict = param(FrozenDict(()), "other fields of the compressed model's step", kind="object",
                             advanced=True)
    corruptions: tuple = param(tuple(cx.names()), "the corruptions to apply", kind="names",
                               choices=cx.names)
    severities: int = param(3, "severities of each corruption, mild to strong", lo=3, hi=cx.MAX_SEVERITY,
                            unit="levels")

    def check(self) -> None:
        method, name = method_strength(self.method, self.parameter)
        step_at(method, name, self.level, self.step_dict(), "level")

    def step_dict(self) -> dict:
        return {"epochs": self.epochs, **self.step.as_dict()}


class Robustness(StudyKind):
    name = "robustness"
    rank = 50
    title = "Robustness"
    help = ("The baseline against the compressed model on corrupted copies of the test split (noise, blur, "
            "contrast, brightness, rotation, zoom, JPEG at several severities), both measured by running their "
            "exported TFLite files.")
    spec_type = RobustnessSpec

    def cost(self, spec: RobustnessSpec) -> Cost:
        epochs = baseline_epochs(spec) + spec.epochs
        evals = 2 * (1 + len(spec.corruptions) * spec.severities)
        return Cost(2, epochs, f"2 runs (a baseline and the compressed model), {epochs} training epochs, then "
                               f"{evals} passes of the exported files over the test split")

    def plan(self, spec: RobustnessSpec, results: Results) -> list[Planned]:
        out = [Planned("baseline", spec.recipe("baseline", []), "baseline", {})]
        if not results.done("baseline"):
            return out
        method, name = method_strength(spec.method, spec.parameter)
        step = step_at(method, name, spec.level, spec.step_dict(), "level")
        recipe = spec.recipe(f"{name} {spec.level:g}", [step], results.loaded_baseline("baseline"), spec.seed)
        check_recipe(recipe, "level")
        out.append(Planned("compressed", recipe, f"{name} {spec.level:g}", {"level": spec.level}))
        return out

    def aggregate(self, spec: RobustnessSpec, results: Results) -> Aggregate:
        from compression.inputs import data

        ds = data.load(spec.dataset)
        x, y = ds.x_test, ds.y_test.astype(np.int64)
        files = {who: (results.artifact(who, "tflite"), results.report(who).get("input")) for who in
                 ("baseline", "compressed")}

        def accuracy(who: str, samples: np.ndarray) -> float:
            path, contract = files[who]
            return round(float((predict_labels(path, samples, contract) == y).mean()), 6)

        rows = [{"name": "clean", "severity": 0, "setting": "none", "baseline_accuracy": accuracy("baseline", x),
                 "compressed_accuracy": accuracy("compressed", x)}]
        examples, labels = [], []
        for name in spec.corruptions:
            for severity in range(1, spec.severities + 1):
                xc = cx.corrupt(x, name, severity, spec.seed)
                rows.append({"name": name, "severity": severity, "setting": cx.describe(name, severity),
                             "baseline_accuracy": accuracy("baseline", xc),
                             "compressed_accuracy": accuracy("compressed", xc)})
                examples.append(xc[:1])
                labels.append(f"{name} {severity}")
        for row in rows:
            row["gap"] = round(row["baseline_accuracy"] - row["compressed_accuracy"], 6)
        compressed = results.final("compressed")
        shown = np.concatenate([x[:1]] + examples)
        arrays = {"examples/images": _display(shown), "examples/labels": np.asarray(["clean"] + labels, dtype=str)}
        return Aggregate({
            "level": spec.level, "parameter": method_strength(spec.method, spec.parameter)[1],
            "baseline": {"accuracy": rows[0]["baseline_accuracy"], "run": results.ref("baseline")},
            "compressed": {"accuracy": rows[0]["compressed_accuracy"], "run": results.ref("compressed"),
                           "sparsity": compressed.get("sparsity")},
            "measured": "accuracy of each exported TFLite file, run with LiteRT on the corrupted test split",
            "corruptions": rows}, arrays)


def _display(x: np.ndarray) -> np.ndarray:
    """uint8 pictures of [0, 1] images ((n, H, W) or (n, H, W, C); flat samples shown as one row)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.reshape((len(x), 1, -1))
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


STUDY = Robustness()

__all__ = ["Robustness", "RobustnessSpec", "STUDY"]
