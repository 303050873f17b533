"""The study-kind protocol: a spec declared with ``param(...)``, a plan of ordinary runs, an aggregate.

A kind is one module in ``compression/studies/kinds/`` defining ``STUDY = SomeKind()``:

* a frozen spec dataclass (subclass of ``StudySpec``) whose own fields are declared with
  ``param(...)`` like a method's step fields (default, bounds, unit, help), so validation,
  ``python -m compression studies`` and the Studies page's widgets come from it. Every spec also
  has ``kind``, ``name``, ``dataset``, ``baseline`` (as in recipes: train one, or ``{"path": ...}``)
  and ``max_train_samples``, parsed as a recipe parses them;
* ``cost(spec)``: runs and training epochs it will take, said before it starts;
* ``plan(spec, results)``: every run that can start given the runs that have ended (plain recipe
  dicts under stable keys); the driver starts the ones not started yet, so a sequential kind
  (lottery rounds) plans its next round when the previous one has ended;
* ``aggregate(spec, results)``: study.json's fields (and arrays for a gallery) from the run folders.

Planning and aggregation read recipes, reports and predictions only: no TensorFlow, no queue.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from compression.errors import RecipeError, UserError
from compression.recipe import Recipe, methods
from compression.recipe.choices import ExportMode
from compression.recipe.method import Method
from compression.recipe.params import Param, param, params_of, parse_value, to_json_value
from compression.recipe.recipe import Baseline, DatasetSpec, step_from_dict
from compression.store import runs as store

MAX_RUNS = 400  # a study that would need more runs is refused before it starts


class StudyError(UserError):
    """A study cannot go on (a run it needs is missing or unreadable); the message says which."""


# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudySpec:
    """Base of every study spec. Subclasses declare their own fields with ``param``."""

    kind: ClassVar[str] = ""

    name: str = field(default="study", metadata={"spec": "name"})
    dataset: DatasetSpec = field(default=DatasetSpec(), metadata={"spec": "dataset"})
    baseline: Baseline = field(default=Baseline(), metadata={"spec": "baseline"})
    max_train_samples: int | None = field(default=None, metadata={"spec": "max_train_samples"})
    export: ExportMode = param(ExportMode.FLOAT32, "how every run exports its file (float32: the figures show "
                               "what the study varies, not quantization)")
    seed: int = param(0, "seed of the baseline and of every run's training (forgetting: the first of its seeds)",
                      lo=0, hi=2**32 - 1, advanced=True)
    latency_runs: int = param(5, "timed invocations per exported file (a study compares accuracy and size; "
                              "latency is measured anyway)", lo=1, hi=10000, advanced=True)

    @classmethod
    def own_params(cls) -> dict[str, Param]:
        """The declared fields, the kind's own first, then the shared ones (export, seed, latency_runs)."""
        declared = params_of(cls)
        shared = params_of(StudySpec)
        own = {k: v for k, v in declared.items() if k not in shared}
        own.update({k: declared[k] for k in shared})
        return own

    @classmethod
    def from_dict(cls, d: dict) -> "StudySpec":
        declared = params_of(cls)
        common = ("kind", "name", "dataset", "baseline", "max_train_samples")
        unknown = sorted(set(d) - set(declared) - set(common))
        if unknown:
            raise RecipeError(unknown[0], f"unknown field; allowed: {', '.join(sorted([*common, *declared]))}")
        name = d.get("name", cls.kind or "study")
        if not isinstance(name, str) or not name.strip() or len(name) > 60 or not name.isprintable():
            raise RecipeError("name", "must be printable text of 1 to 60 characters")
        if "dataset" not in d:
            raise RecipeError("dataset", 'missing; a dataset name (digits, mnist, ...) or {"npz": "data.npz"}')
        if "baseline" not in d:
            raise RecipeError("baseline", 'missing; give {"arch": NAME, ...} to train one or {"path": "model.keras"}')
        mts = d.get("max_train_samples")
        kw: dict[str, Any] = {
            "name": name.strip(), "dataset": DatasetSpec.parse(d["dataset"]),
            "baseline": Baseline.from_dict(d["baseline"]),
            "max_train_samples": None if mts is None else parse_value(mts, "max_train_samples",
                                                                      Param("int", "", lo=10)),
        }
        for f in fields(cls):
            if f.name in declared:
                default = f.default if f.default is not MISSING else None
                kw[f.name] = parse_value(d.get(f.name, default), f.name, declared[f.name])
        spec = cls(**kw)
        spec.check()
        return spec

    def check(self) -> None:
        """Rules across fields; raise RecipeError naming the field."""

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "dataset": self.dataset.to_json(),
                               "baseline": self.baseline.to_dict(), "max_train_samples": self.max_train_samples}
        for name in self.own_params():
            out[name] = to_json_value(getattr(self, name))
        return out

    # -- helpers for the kinds' plans ------------------------------------------------------------

    def recipe(self, label: str, steps: list[dict], baseline: dict | None = None, seed: int | None = None) -> dict:
        """A recipe dict of this study: its dataset, export and cap; ``baseline`` a loaded model
        (``{"path": ...}``) or, by default, the spec's own baseline."""
        base = dict(baseline) if baseline is not None else self.baseline.to_dict()
        if seed is not None:
            base["seed"] = int(seed)
        return {"name": run_name(self.name, label), "dataset": self.dataset.to_json(),
                "max_train_samples": self.max_train_samples, "baseline": base, "steps": [dict(s) for s in steps],
                "export": self.export.value, "latency_runs": self.latency_runs}

    @property
    def trains_baseline(self) -> bool:
        return self.baseline.path is None


def run_name(study: str, label: str) -> str:
    text = f"{study} · {label}"
    return text if len(text) <= 100 else text[:99] + "…"


# --- what the kinds read from the runs ------------------------------------------------------------


@dataclass
class Outcome:
    """A planned run as the driver last saw it."""

    key: str
    state: str  # queued | running | succeeded | failed | cancelled
    run_dir: Path | None
    error: str | None = None
    ref: str = ""  # job id (workspace) or folder (foreground)


class Results:
    """The runs of a study by key, with cached reads of their folders (reports, predictions)."""

    def __init__(self, outcomes: dict[str, Outcome]):
        self.outcomes = outcomes
        self._reports: dict[str, dict] = {}

    def done(self, key: str) -> bool:
        o = self.outcomes.get(key)
        return o is not None and o.state == "succeeded" and o.run_dir is not None

    def all_done(self, keys) -> bool:
        return all(self.done(k) for k in keys)

    def dir(self, key: str) -> Path:
        o = self.outcomes.get(key)
        if o is None or o.run_dir is None:
            raise StudyError(f"run {key} has not run")
        return o.run_dir

    def ref(self, key: str) -> str:
        return self.outcomes[key].ref

    def report(self, key: str) -> dict:
        if key not in self._reports:
            report = store.read_report(self.dir(key))
            if report is None:
                raise StudyError(f"run {key} ({self.dir(key).name}) has no readable report.json")
            self._reports[key] = report
        return self._reports[key]

    def predictions(self, key: str) -> dict[str, np.ndarray]:
        path = store.artifact_path(self.dir(key), "predictions", report=self.report(key))
        preds = store.read_predictions(path) if path else None
        if preds is None or "final_pred" not in preds or "y_true" not in preds:
            raise StudyError(f"run {key} ({self.dir(key).name}) has no readable predictions.npz")
        return preds

    def artifact(self, key: str, name: str) -> Path:
        path = store.artifact_path(self.dir(key), name, report=self.report(key))
        if path is None:
            raise StudyError(f"run {key} ({self.dir(key).name}) has no {name} file")
        return path

    def loaded_baseline(self, key: str, file: str = "baseline") -> dict:
        """``{"path": ...}`` for a later run that loads this run's baseline (or, ``file="keras"``, its final
        model), as the Pipeline page's recipes load a baseline job's ``baseline.keras``."""
        return {"path": str(self.artifact(key, file))}

    def final(self, key: str) -> dict:
        return self.report(key).get("final") or {}

    def accuracy(self, key: str) -> float:
        """The accuracy of the run's exported file (the figure every study plots)."""
        value = self.final(key).get("accuracy")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise StudyError(f"run {key} ({self.dir(key).name}) reports no accuracy for its exported file")
        return float(value)


@dataclass
class Planned:
    key: str  # stable within the study: "baseline", "level-0.9", "ticket/2", "seed-3/level-0.5"
    recipe: dict  # a plain recipe dict (validated by the driver)
    label: str  # for people: "level 0.9", "round 2 ticket"
    role: dict = field(default_factory=dict)  # what the aggregate and the page need: level, seed, round, control


@dataclass
class Cost:
    runs: int | None  # None: known once the baseline has run (e.g. one run per layer)
    epochs: int | None
    text: str  # one sentence for the page and the command line


@dataclass
class Aggregate:
    fields: dict  # study.json's kind-specific fields
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # study.npz (galleries)


# --- the kind ---------------------------------------------------------------------------------------


class StudyKind:
    """A study kind's declaration and behaviour. Subclasses set the class attributes."""

    name: ClassVar[str]
    title: ClassVar[str]
    help: ClassVar[str]
    spec_type: ClassVar[type[StudySpec]]
    rank: ClassVar[int] = 50

    def cost(self, spec: StudySpec) -> Cost:  # pragma: no cover
        raise NotImplementedError

    def plan(self, spec: StudySpec, results: Results) -> list[Planned]:  # pragma: no cover
        raise NotImplementedError

    def aggregate(self, spec: StudySpec, results: Results) -> Aggregate:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:
        spec = self.spec_type
        defaults = {f.name: f.default for f in fields(spec)}
        params = {name: {"default": to_json_value(defaults[name]), **p.describe()}
                  for name, p in spec.own_params().items()}
        return {"kind": self.name, "title": self.title, "help": self.help, "params": params,
                "common": {"name": "the study's name (its runs are named after it)",
                           "dataset": "as in recipes: a dataset name or {\"npz\": \"data.npz\"}",
                           "baseline": "as in recipes: {\"arch\": NAME, ...} to train one, or {\"path\": \"model.keras\"}",
                           "max_train_samples": "optional cap on the training split (quick demos)"}}


# --- helpers the kinds share ------------------------------------------------------------------------


def baseline_epochs(spec: StudySpec) -> int:
    return spec.baseline.epochs if spec.trains_baseline else 0


def level_key(level: float) -> str:
    return f"level-{level:g}"


def method_strength(method_name: str, parameter: str | None, where: str = "parameter") -> tuple[Method, str]:
    """The method and the numeric parameter a study varies (the method's declared strength by default)."""
    method = methods.get(method_name, "method")
    name = parameter or method.strength
    if not name:
        raise RecipeError(where, f"{method.name} declares no default strength; name a numeric parameter of it")
    declared = params_of(method.step_type)
    if name not in declared or declared[name].kind not in ("float", "int", "per_layer_float", "per_layer_int"):
        numeric = [k for k, p in declared.items() if p.kind in ("float", "int", "per_layer_float", "per_layer_int")]
        raise RecipeError(where, f"{name!r} is not a numeric parameter of {method.name}; its numeric parameters: "
                                 f"{', '.join(numeric)}")
    return method, name


def step_at(method: Method, parameter: str, level: float, extra: dict, where: str) -> dict:
    """The step dict of ``method`` with ``parameter`` at ``level`` (the method adjusts fields that must follow),
    checked by the method's own declarations; an error names ``where``."""
    declared = params_of(method.step_type)
    value: Any = level
    if declared[parameter].kind in ("int", "per_layer_int"):
        if float(level) != int(level):
            raise RecipeError(where, f"{level:g} is not a whole number; {method.name}.{parameter} takes whole numbers")
        value = int(level)
    step = method.at_strength({"method": method.name, **extra}, parameter, value)
    try:
        step_from_dict(step, "step")
    except RecipeError as e:
        raise RecipeError(where, f"{method.name} refuses it: {e}") from None
    return step


def check_recipe(recipe: dict, where: str) -> None:
    """A planned recipe the spec makes must be valid (paths are checked when it is started)."""
    try:
        Recipe.from_dict(recipe)
    except RecipeError as e:
        raise RecipeError(where, str(e)) from None


def number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


__all__ = ["Aggregate", "Cost", "MAX_RUNS", "Outcome", "Planned", "Results", "StudyError", "StudyKind", "StudySpec",
           "baseline_epochs", "check_recipe", "level_key", "method_strength", "number", "run_name", "step_at"]
