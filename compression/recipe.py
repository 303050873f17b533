"""The recipe: a validated, serialisable description of one run.

A recipe is plain JSON. ``Recipe.from_dict`` checks every field and raises
``RecipeError`` naming the field and the allowed values; ``to_dict`` writes every
field with its default filled in, so a stored recipe says exactly what ran.
No TensorFlow here: the dashboard builds and checks recipes without it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from compression.choices import Arch, CentroidInit, DatasetName, ExportMode, LayerScope, Method, Schedule
from compression.errors import RecipeError

RECIPE_VERSION = 1


# --- small validators -------------------------------------------------------------------


def _enum(enum, value, where):
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise RecipeError(where, f"{value!r} is not one of: {allowed}") from None


def _int(value, where, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise RecipeError(where, f"{value!r} is not a whole number")
    value = int(value)
    if lo is not None and value < lo:
        raise RecipeError(where, f"{value} is below the minimum {lo}" + (f" (allowed {lo}..{hi})" if hi else ""))
    if hi is not None and value > hi:
        raise RecipeError(where, f"{value} is above the maximum {hi} (allowed {lo}..{hi})")
    return value


def _float(value, where, lo, hi, hi_open=False, lo_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecipeError(where, f"{value!r} is not a number")
    value = float(value)
    lo_bad = value <= lo if lo_open else value < lo
    hi_bad = value >= hi if hi_open else value > hi
    if lo_bad or hi_bad:
        rng = ("(" if lo_open else "[") + f"{lo:g}, {hi:g}" + (")" if hi_open else "]")
        raise RecipeError(where, f"{value:g} is outside {rng}")
    return value


def _bool(value, where):
    if not isinstance(value, bool):
        raise RecipeError(where, f"{value!r} must be true or false")
    return value


def _check_keys(data: dict, cls, where: str, extra: tuple[str, ...] = ()):
    known = {f.name for f in fields(cls)} | set(extra)
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(
            f"{where}.{unknown[0]}" if where else unknown[0],
            f"unknown field; allowed: {', '.join(sorted(known))}",
        )


# --- layer selection ---------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSelection:
    """Which layers a method touches. Layers without a kernel are never touched."""

    scope: LayerScope = LayerScope.ALL
    values: tuple[str, ...] = ()  # layer types (e.g. "Dense") or layer names

    @classmethod
    def parse(cls, data, where: str) -> "LayerSelection":
        if isinstance(data, LayerSelection):
            return data
        if data is None:
            return cls()
        if isinstance(data, str):
            scope = _enum(LayerScope, data, where)
            if scope in (LayerScope.TYPES, LayerScope.NAMES):
                raise RecipeError(where, f'write {{"{scope.value}": [...]}} to choose layers by {scope.value[:-1]}')
            return cls(scope)
        if isinstance(data, dict) and len(data) == 1:
            key, values = next(iter(data.items()))
            scope = _enum(LayerScope, key, where)
            if scope not in (LayerScope.TYPES, LayerScope.NAMES):
                raise RecipeError(where, f'"{key}" takes no list; write "{key}"')
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, (list, tuple)) or not values or not all(
                isinstance(v, str) and v for v in values
            ):
                raise RecipeError(where, f"{key} needs a non-empty list of strings")
            return cls(scope, tuple(values))
        raise RecipeError(
            where, 'must be "all", "all_but_first_last", {"types": [...]} or {"names": [...]}'
        )

    def to_json(self):
        if self.scope in (LayerScope.TYPES, LayerScope.NAMES):
            return {self.scope.value: list(self.values)}
        return self.scope.value

    def describe(self) -> str:
        if self.scope == LayerScope.ALL:
            return "all layers with weights"
        if self.scope == LayerScope.ALL_BUT_FIRST_LAST:
            return "all layers with weights but the first and last"
        kind = "of type" if self.scope == LayerScope.TYPES else "named"
        return f"layers {kind} {', '.join(self.values)}"


# --- steps -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneStep:
    """Magnitude pruning (tfmot.sparsity.keras.prune_low_magnitude)."""

    method: Method = Method.PRUNE
    schedule: Schedule = Schedule.POLYNOMIAL_DECAY
    # polynomial_decay: sparsity grows from initial to final between begin_step and end_step
    initial_sparsity: float = 0.5
    final_sparsity: float = 0.8
    begin_step: int = 0
    end_step: int | None = None  # None: ceil(n_train / batch_size) * epochs
    frequency: int = 100  # steps between mask updates
    # constant_sparsity: one target from begin_step on
    target_sparsity: float = 0.5
    # structured sparsity (M, N): M zeros in every N consecutive weights, e.g. (2, 4); replaces the schedule's target
    sparsity_m_by_n: tuple[int, int] | None = None
    layers: LayerSelection = LayerSelection()
    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 1e-3  # tfmot's pruning example fine-tunes with Adam's default

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "PruneStep":
        _check_keys(d, cls, where)
        s = cls()
        kw: dict[str, Any] = {}
        kw["schedule"] = _enum(Schedule, d.get("schedule", s.schedule), f"{where}.schedule")
        for name in ("initial_sparsity", "final_sparsity", "target_sparsity"):
            kw[name] = _float(d.get(name, getattr(s, name)), f"{where}.{name}", 0, 1, hi_open=True)
        kw["begin_step"] = _int(d.get("begin_step", s.begin_step), f"{where}.begin_step", 0)
        end = d.get("end_step", s.end_step)
        kw["end_step"] = None if end is None else _int(end, f"{where}.end_step", 1)
        if kw["end_step"] is not None and kw["end_step"] <= kw["begin_step"]:
            raise RecipeError(f"{where}.end_step", f"{kw['end_step']} must be after begin_step {kw['begin_step']}")
        kw["frequency"] = _int(d.get("frequency", s.frequency), f"{where}.frequency", 1)
        if kw["schedule"] == Schedule.POLYNOMIAL_DECAY and kw["final_sparsity"] < kw["initial_sparsity"]:
            raise RecipeError(
                f"{where}.final_sparsity",
                f"{kw['final_sparsity']:g} is below initial_sparsity {kw['initial_sparsity']:g}; "
                "polynomial_decay only raises sparsity",
            )
        mn = d.get("sparsity_m_by_n", None)
        if mn is not None:
            if isinstance(mn, str) and ":" in mn:
                mn = mn.split(":")
            try:
                m, n = (int(x) for x in mn)
            except (TypeError, ValueError):
                raise RecipeError(f"{where}.sparsity_m_by_n", f"{mn!r} is not a pair like [2, 4]") from None
            if not (0 < m < n <= 32):
                raise RecipeError(f"{where}.sparsity_m_by_n", f"[{m}, {n}] needs 0 < M < N <= 32, e.g. [2, 4]")
            mn = (m, n)
        kw["sparsity_m_by_n"] = mn
        kw["layers"] = LayerSelection.parse(d.get("layers"), f"{where}.layers")
        kw.update(_training(d, s, where))
        return cls(**kw)

    @property
    def target(self) -> float:
        """The sparsity this step aims at, as a fraction."""
        if self.sparsity_m_by_n:
            m, n = self.sparsity_m_by_n
            return m / n
        if self.schedule == Schedule.CONSTANT_SPARSITY:
            return self.target_sparsity
        return self.final_sparsity


@dataclass(frozen=True)
class ClusterStep:
    """Weight clustering (tfmot.clustering.keras.cluster_weights)."""

    method: Method = Method.CLUSTER
    number_of_clusters: int = 16
    cluster_centroids_init: CentroidInit = CentroidInit.KMEANS_PLUS_PLUS
    layers: LayerSelection = LayerSelection()
    # keep earlier sparsity (sparsity-preserving clustering); false only with allow_unsafe_order
    preserve: bool = True
    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 1e-5  # tfmot's clustering example fine-tunes at 1e-5

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "ClusterStep":
        _check_keys(d, cls, where)
        s = cls()
        kw: dict[str, Any] = {
            "number_of_clusters": _int(d.get("number_of_clusters", s.number_of_clusters),
                                       f"{where}.number_of_clusters", 2, 256),
            "cluster_centroids_init": _enum(CentroidInit, d.get("cluster_centroids_init", s.cluster_centroids_init),
                                            f"{where}.cluster_centroids_init"),
            "layers": LayerSelection.parse(d.get("layers"), f"{where}.layers"),
            "preserve": _bool(d.get("preserve", True), f"{where}.preserve"),
        }
        kw.update(_training(d, s, where))
        return cls(**kw)


@dataclass(frozen=True)
class QuantizeStep:
    """Quantization-aware training (tfmot.quantization.keras), exported as int8."""

    method: Method = Method.QUANTIZE
    layers: LayerSelection = LayerSelection()
    # keep earlier sparsity and clusters (PQAT, CQAT, PCQAT); false only with allow_unsafe_order
    preserve: bool = True
    epochs: int = 1
    batch_size: int = 500  # tfmot's QAT example: one epoch, large batches
    learning_rate: float = 1e-4

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "QuantizeStep":
        _check_keys(d, cls, where)
        s = cls()
        kw: dict[str, Any] = {"layers": LayerSelection.parse(d.get("layers"), f"{where}.layers"),
                              "preserve": _bool(d.get("preserve", True), f"{where}.preserve")}
        kw.update(_training(d, s, where, min_epochs=1))
        return cls(**kw)


Step = PruneStep | ClusterStep | QuantizeStep
STEP_TYPES: dict[Method, type] = {Method.PRUNE: PruneStep, Method.CLUSTER: ClusterStep, Method.QUANTIZE: QuantizeStep}


def _training(d: dict, s, where: str, min_epochs: int = 1) -> dict:
    return {
        "epochs": _int(d.get("epochs", s.epochs), f"{where}.epochs", min_epochs, 1000),
        "batch_size": _int(d.get("batch_size", s.batch_size), f"{where}.batch_size", 1, 65536),
        "learning_rate": _float(d.get("learning_rate", s.learning_rate), f"{where}.learning_rate", 0, 1, lo_open=True),
    }


def step_from_dict(d, where: str) -> Step:
    if not isinstance(d, dict):
        raise RecipeError(where, "each step must be an object with a \"method\"")
    if "method" not in d:
        raise RecipeError(f"{where}.method", f"missing; allowed: {', '.join(m.value for m in Method)}")
    method = _enum(Method, d["method"], f"{where}.method")
    return STEP_TYPES[method].from_dict(d, where)


def step_to_dict(step: Step) -> dict:
    out = {}
    for f in fields(step):
        v = getattr(step, f.name)
        if isinstance(v, LayerSelection):
            v = v.to_json()
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v.value if hasattr(v, "value") else v
    return out


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
            seed=_int(d.get("seed", s.seed), f"{where}.seed", 0, 2**32 - 1),
            learning_rate=_float(d.get("learning_rate", s.learning_rate), f"{where}.learning_rate", 0, 1, lo_open=True),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arch"] = self.arch.value if self.arch else None
        if self.path is None:
            d.pop("path")
        else:
            d.pop("arch")
        return d


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
    max_train_samples: int | None = None  # cap the training split (quick demos, tests)
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
            max_train_samples=None if mts is None else _int(mts, "max_train_samples", 10),
            latency_runs=_int(d.get("latency_runs", 50), "latency_runs", 1, 10000),
            version=version,
        )
        recipe.check()
        return recipe

    def check(self) -> None:
        """Cross-field rules; the order rules live in ordering.plan."""
        if any(isinstance(s, QuantizeStep) for s in self.steps) and self.export in (
            ExportMode.FLOAT32,
            ExportMode.FLOAT16,
        ):
            raise RecipeError(
                "export",
                f"{self.export.value} would throw away the quantize step's int8 training; "
                "choose int8_dynamic or int8_full, or remove the quantize step",
            )
        from compression.ordering import plan  # late import: ordering imports this module

        plan(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Recipe":
        """A recipe from JSON text; size, nesting and number length are bounded before parsing."""
        from compression import limits

        try:
            data = limits.loads(text, "the recipe", limits.MAX_RECIPE_BYTES, limits.MAX_RECIPE_DEPTH)
        except limits.LimitError as e:
            raise RecipeError("", str(e)) from None
        except json.JSONDecodeError as e:
            raise RecipeError("", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        from compression import limits

        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(limits.MAX_RECIPE_BYTES + 1)  # never more than the cap, whatever the file's size
        except FileNotFoundError:
            raise RecipeError("", f"recipe file {path} does not exist") from None
        except OSError as e:
            raise RecipeError("", f"cannot read recipe file {path}: {e.strerror or type(e).__name__}") from None
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


def training_epochs(recipe: Recipe) -> int:
    """Epochs of training the recipe costs: the baseline's (when trained) plus every step's."""
    base = recipe.baseline.epochs if recipe.baseline.path is None else 0
    return base + sum(s.epochs for s in recipe.steps)


def default_step(method: Method | str) -> Step:
    return STEP_TYPES[Method(method)]()


__all__ = [
    "Baseline",
    "ClusterStep",
    "DatasetSpec",
    "LayerSelection",
    "PruneStep",
    "QuantizeStep",
    "Recipe",
    "RecipeError",
    "Step",
    "default_step",
    "step_from_dict",
    "step_to_dict",
    "training_epochs",
]
