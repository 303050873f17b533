"""The recipe: a validated, serialisable description of one run.

A recipe is plain JSON. ``Recipe.from_dict`` checks every field and raises
``RecipeError`` naming the field and the allowed values; ``to_dict`` writes every
field with its default filled in, so a stored recipe says exactly what ran.
No TensorFlow here: the dashboard builds and checks recipes without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from compression.errors import RecipeError
from compression.recipe import methods
from compression.recipe.choices import Arch, DatasetName, ExportMode, LrSchedule
from compression.recipe.method import StepConfig, training_kwargs
from compression.recipe.params import LayerSelection, Param, check_enum, check_float, check_int

MAX_SEED = 2**32 - 1
MAX_TRAIN_SAMPLES = 10**9  # more samples than any dataset the studio can hold in memory
# Architectures whose stride and pooling need images this large (two 5x5 valid convolutions and pools).
MIN_IMAGE_SIDE = {Arch.LENET_5_CAFFE: 16}
DATASET_IMAGE_SIDE = {DatasetName.DIGITS: 8, DatasetName.MNIST: 28, DatasetName.FASHION_MNIST: 28,
                      DatasetName.CIFAR10: 32}

RECIPE_VERSION = 1


# --- validators (shared with the method step types) -------------------------------------


def _enum(enum, value, where):
    return check_enum(enum, value, where)


def _int(value, where, lo=None, hi=None):
    return check_int(value, where, lo, hi)


def _float(value, where, lo, hi, hi_open=False, lo_open=False):
    return check_float(value, where, Param("float", "", lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open))


def _check_keys(data: dict, cls, where: str, extra: tuple[str, ...] = ()):
    known = {f.name for f in fields(cls)} | set(extra)
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(
            f"{where}.{unknown[0]}" if where else unknown[0],
            f"unknown field; allowed: {', '.join(sorted(known))}",
        )


# --- steps: each method declares its own step type (compression/recipe/methods/) ---------


def step_from_dict(d, where: str) -> StepConfig:
    if not isinstance(d, dict):
        raise RecipeError(where, "each step must be an object with a \"method\"")
    if "method" not in d:
        raise RecipeError(f"{where}.method", f"missing; allowed: {', '.join(methods.names())}")
    return methods.step_type(d["method"], f"{where}.method").from_dict(d, where)


def step_to_dict(step: StepConfig) -> dict:
    return step.to_dict()


Step = StepConfig


# --- baseline and dataset --------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """Either an architecture to train or a model file to load."""

    arch: Arch | None = Arch.LENET_300_100
    path: str | None = None
    epochs: int = 2
    batch_size: int = 128
    seed: int = 0
    learning_rate: float = 1e-3
    lr_schedule: LrSchedule = LrSchedule.CONSTANT  # constant | cosine (to zero) | exponential (decay_rate/epoch)
    decay_rate: float = 0.9
    weight_decay: float = 0.0  # decoupled (AdamW); 0 = plain Adam
    label_smoothing: float = 0.0  # share of each label spread over the other classes
    augment_shift: int = 0  # random shifts of up to this many pixels (image inputs)

    @classmethod
    def from_dict(cls, d, where: str = "baseline") -> "Baseline":
        if not isinstance(d, dict):
            raise RecipeError(where, 'must be {"arch": NAME, ...} or {"path": "model.keras"}')
        _check_keys(d, cls, where)
        s = cls()
        path = d.get("path")
        if path is not None:
            if not isinstance(path, str) or not path.strip():
                raise RecipeError(f"{where}.path", "must be the path of a .keras or .h5 file")
            if not path.lower().endswith((".keras", ".h5", ".hdf5")):
                raise RecipeError(f"{where}.path", f"{path!r} is not a .keras or .h5 file")
            if d.get("arch") is not None:
                raise RecipeError(where, "give either arch (to train) or path (to load), not both")
            arch = None
        else:
            if "arch" not in d:
                raise RecipeError(f"{where}.arch", f"missing; allowed: {', '.join(a.value for a in Arch)} (or give a path)")
            arch = _enum(Arch, d["arch"], f"{where}.arch")
        return cls(
            arch=arch,
            path=path,
            epochs=_int(d.get("epochs", s.epochs), f"{where}.epochs", 0, 1000),
            batch_size=_int(d.get("batch_size", s.batch_size), f"{where}.batch_size", 1, 65536),
            seed=_int(d.get("seed", s.seed), f"{where}.seed", 0, MAX_SEED),
            learning_rate=_float(d.get("learning_rate", s.learning_rate), f"{where}.learning_rate", 0, 1, lo_open=True),
            lr_schedule=_enum(LrSchedule, d.get("lr_schedule", s.lr_schedule), f"{where}.lr_schedule"),
            decay_rate=_float(d.get("decay_rate", s.decay_rate), f"{where}.decay_rate", 0, 1, lo_open=True),
            weight_decay=_float(d.get("weight_decay", s.weight_decay), f"{where}.weight_decay", 0, 0.1),
            label_smoothing=_float(d.get("label_smoothing", s.label_smoothing), f"{where}.label_smoothing", 0, 0.5),
            augment_shift=_int(d.get("augment_shift", s.augment_shift), f"{where}.augment_shift", 0, 8),
        )

    def training(self) -> dict:
        """Keyword arguments for engine.models.fit."""
        return training_kwargs(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arch"] = self.arch.value if self.arch else None
        d["lr_schedule"] = self.lr_schedule.value
        if self.path is None:
            d.pop("path")
            return d
        # a loaded model is not trained here: its training fields would only mislead a reader
        # (the seed stays: it seeds the steps' fine-tuning)
        return {"path": self.path, "seed": self.seed}


@dataclass(frozen=True)
class DatasetSpec:
    name: DatasetName | None = DatasetName.DIGITS
    npz: str | None = None

    @classmethod
    def parse(cls, d, where: str = "dataset") -> "DatasetSpec":
        if isinstance(d, str):
            return cls(name=_enum(DatasetName, d, where))
        if isinstance(d, dict) and set(d) == {"npz"} and isinstance(d["npz"], str) and d["npz"].strip():
            if not d["npz"].lower().endswith(".npz"):
                raise RecipeError(f"{where}.npz", f"{d['npz']!r} is not an .npz file")
            return cls(name=None, npz=d["npz"])
        allowed = ", ".join(n.value for n in DatasetName)
        raise RecipeError(where, f'must be one of {allowed}, or {{"npz": "data.npz"}}')

    def to_json(self):
        return {"npz": self.npz} if self.npz else self.name.value

    @property
    def label(self) -> str:
        return Path(self.npz).name if self.npz else self.name.value


# --- the recipe ------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    name: str = "recipe"
    dataset: DatasetSpec = DatasetSpec()
    baseline: Baseline = Baseline()
    steps: tuple[Step, ...] = ()
    export: ExportMode = ExportMode.INT8_DYNAMIC
    allow_unsafe_order: bool = False  # run orders that undo earlier steps, to show the effect
    max_train_samples: int | None = None  # cap the training split (quick demos, tests); at most MAX_TRAIN_SAMPLES
    latency_runs: int = 50  # timed batch-1 invocations per TFLite file, after warm-up
    version: int = RECIPE_VERSION

    @classmethod
    def from_dict(cls, d: Any) -> "Recipe":
        if not isinstance(d, dict):
            raise RecipeError("", "a recipe must be a JSON object")
        _check_keys(d, cls, "")
        version = _int(d.get("version", RECIPE_VERSION), "version", 1, RECIPE_VERSION)
        name = d.get("name", "recipe")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise RecipeError("name", "must be a non-empty string of at most 100 characters")
        if not name.isprintable():
            raise RecipeError("name", "must be printable text: no control characters, tabs or line breaks")
        if "dataset" not in d:
            allowed = ", ".join(n.value for n in DatasetName)
            raise RecipeError("dataset", f'missing; allowed: {allowed}, or {{"npz": "data.npz"}}')
        if "baseline" not in d:
            raise RecipeError("baseline", 'missing; give {"arch": NAME} to train or {"path": "model.keras"} to load')
        steps = d.get("steps", [])
        if not isinstance(steps, list):
            raise RecipeError("steps", "must be a list of steps")
        if len(steps) > 8:
            raise RecipeError("steps", f"{len(steps)} steps; at most 8")
        mts = d.get("max_train_samples")
        unsafe = d.get("allow_unsafe_order", False)
        if not isinstance(unsafe, bool):
            raise RecipeError("allow_unsafe_order", "must be true or false")
        recipe = cls(
            name=name.strip(),
            dataset=DatasetSpec.parse(d["dataset"]),
            baseline=Baseline.from_dict(d["baseline"]),
            steps=tuple(step_from_dict(s, f"steps[{i}]") for i, s in enumerate(steps)),
            export=_enum(ExportMode, d.get("export", ExportMode.INT8_DYNAMIC), "export"),
            allow_unsafe_order=unsafe,
            max_train_samples=None if mts is None else _int(mts, "max_train_samples", 10, MAX_TRAIN_SAMPLES),
            latency_runs=_int(d.get("latency_runs", 50), "latency_runs", 1, 10000),
            version=version,
        )
        recipe.check()
        return recipe

    def check(self) -> None:
        """Rules across fields (each method's own, e.g. QAT needs an int8 export); the order
        rules live in ordering.plan."""
        for i, step in enumerate(self.steps):
            methods.get(step.method, f"steps[{i}].method").check_recipe(step, self, f"steps[{i}]")
        side = MIN_IMAGE_SIDE.get(self.baseline.arch)
        known = DATASET_IMAGE_SIDE.get(self.dataset.name) if self.dataset.name else None
        if side and known and known < side:
            raise RecipeError("baseline.arch", f"{self.baseline.arch.value} needs images of at least {side}×{side}; "
                                               f"{self.dataset.name.value} has {known}×{known}: choose mnist or "
                                               "fashion_mnist, or another architecture")
        from compression.recipe.ordering import plan  # the planner reads steps of this module's types

        plan(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Recipe":
        """A recipe from JSON text; size, nesting and number length are bounded before parsing."""
        from compression.inputs import limits

        try:
            data = limits.loads(text, "the recipe", limits.MAX_RECIPE_BYTES, limits.MAX_RECIPE_DEPTH)
        except limits.LimitError as e:
            raise RecipeError("", str(e)) from None
        except json.JSONDecodeError as e:
            raise RecipeError("", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        from compression.inputs import limits

        from compression.inputs.paths import read_regular_file, user_path

        path = user_path(path, "recipe file")
        raw = read_regular_file(path, limits.MAX_RECIPE_BYTES, "recipe file")  # never more than the cap + 1 byte
        if len(raw) > limits.MAX_RECIPE_BYTES:
            raise RecipeError("", f"recipe file {path.name} is larger than {limits.human(limits.MAX_RECIPE_BYTES)}; "
                                  "a recipe is a few kilobytes")
        return cls.from_json(raw)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "name": self.name,
            "dataset": self.dataset.to_json(),
            "max_train_samples": self.max_train_samples,
            "baseline": self.baseline.to_dict(),
            "steps": [step_to_dict(s) for s in self.steps],
            "export": self.export.value,
            "allow_unsafe_order": self.allow_unsafe_order,
            "latency_runs": self.latency_runs,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def with_(self, **changes) -> "Recipe":
        return replace(self, **changes)


def default_step(method: str) -> StepConfig:
    return methods.step_type(method)()


__all__ = [
    "Baseline",
    "DatasetSpec",
    "LayerSelection",
    "Recipe",
    "RecipeError",
    "Step",
    "default_step",
    "step_from_dict",
    "step_to_dict",
]
