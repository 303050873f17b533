"""The method protocol, declaration half: everything the studio says about a method.

A method is declared once, in ``compression/recipe/methods/<name>.py``:

* a frozen step dataclass (subclass of ``StepConfig``) whose fields are its parameters, each
  declared with ``param(...)`` (default, bounds, unit, one line of help);
* a ``Method`` subclass holding its facts: ordering (what it undoes, what it can preserve and
  through which step field, its variants and their short labels), what it establishes in the
  model that later stages must keep, whether it leaves a quantization-aware model, its target
  in words, the notes it will add for a given amount of data, how a preset fits it to data,
  and the health hints its own settings can explain.

Recipe validation, the planner, the health checks, the charts, the pages and the command
line read these declarations and nothing else: no module outside a method's own two files
names a method. The executing half (``apply``) lives in ``compression/engine/methods/<name>.py``.
This module imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

from compression.errors import RecipeError
from compression.recipe.choices import LrSchedule
from compression.recipe.params import Param, param, params_of, parse_value, to_json_value

TRAINING_FIELDS = ("epochs", "batch_size", "learning_rate", "lr_schedule", "decay_rate", "weight_decay",
                   "label_smoothing", "augment_shift", "distill_alpha", "distill_temperature")


@dataclass(frozen=True)
class StepConfig:
    """Base of every step dataclass. Subclasses declare their parameters with ``param``.

    The fine-tuning parameters every method shares are declared here; a method redeclares
    one to change its default (e.g. clustering fine-tunes at 1e-5).
    """

    method: ClassVar[str] = ""

    epochs: int = param(1, "fine-tuning epochs after the change", lo=1, hi=1000, unit="epochs")
    batch_size: int = param(128, "samples per optimizer step while fine-tuning", lo=1, hi=65536, unit="samples")
    learning_rate: float = param(1e-3, "Adam's learning rate while fine-tuning", lo=0, hi=1, lo_open=True)
    lr_schedule: LrSchedule = param(LrSchedule.CONSTANT, "how the learning rate changes while fine-tuning: "
                                    "constant, cosine decay to zero, or exponential decay by decay_rate per epoch",
                                    advanced=True, label="Learning-rate schedule")
    decay_rate: float = param(0.9, "exponential schedule: the learning rate is multiplied by this every epoch",
                              lo=0, hi=1, lo_open=True, advanced=True, show_if=("lr_schedule", "exponential"),
                              label="Decay per epoch")
    weight_decay: float = param(0.0, "decoupled weight decay (AdamW) while fine-tuning; 0 turns it off",
                                lo=0, hi=0.1, advanced=True)
    label_smoothing: float = param(0.0, "share of each label's probability spread over the other classes while "
                                   "fine-tuning; 0 turns it off", lo=0, hi=0.5, advanced=True)
    augment_shift: int = param(0, "move each training image by a random 0 to this many pixels along each axis "
                               "while fine-tuning (image inputs only); 0 turns it off", lo=0, hi=8, unit="pixels",
                               advanced=True, label="Random shifts (pixels)")
    distill_alpha: float = param(0.0, "knowledge distillation: weight of matching the float baseline's softened "
                                 "predictions (the teacher, computed once per batch) against the labels' "
                                 "cross-entropy; 0 turns it off", lo=0, hi=1, advanced=True,
                                 label="Distillation weight")
    distill_temperature: float = param(4.0, "distillation: the temperature both predictions are softened with",
                                       lo=1, hi=20, advanced=True, label="Distillation temperature")

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "StepConfig":
        declared = params_of(cls)
        unknown = sorted(set(d) - set(declared) - {"method"})
        if unknown:
            raise RecipeError(f"{where}.{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(declared))}")
        kw = {}
        for f in fields(cls):
            if f.name not in declared:
                continue
            default = f.default if f.default is not MISSING else None
            kw[f.name] = parse_value(d.get(f.name, default), f"{where}.{f.name}", declared[f.name])
        step = cls(**kw)
        step.check(where)
        return step

    def check(self, where: str) -> None:
        """Rules across fields; raise RecipeError naming the field."""

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"method": self.method}
        for name in ordered_params(type(self)):
            out[name] = to_json_value(getattr(self, name))
        return out

    def training(self) -> dict:
        """Keyword arguments for engine.models.fit."""
        return training_kwargs(self)

    @property
    def target_text(self) -> str:
        """What the step aims at, in words ("90% sparsity", "16 clusters"); '' if nothing to say."""
        return ""


def training_kwargs(config) -> dict:
    """engine.models.fit's keyword arguments from anything with the training fields (a step, the baseline:
    it has no teacher, hence no distillation fields)."""
    out = {name: getattr(config, name) for name in TRAINING_FIELDS if hasattr(config, name)}
    out["lr_schedule"] = str(out["lr_schedule"])
    return out


def ordered_params(step_type: type) -> dict[str, Param]:
    """The method's own parameters first, then the shared fine-tuning ones."""
    declared = params_of(step_type)
    own = {k: v for k, v in declared.items() if k not in TRAINING_FIELDS}
    own.update({k: declared[k] for k in TRAINING_FIELDS if k in declared})
    return own


@dataclass(frozen=True)
class Hint:
    """A likely cause of a bad result that a step's own settings show, and what to change."""

    cause: str
    fix: str


# Facts a method can establish in a model; compression.recipe.figures knows how to see each undone.
# "codebooks": every block of weights of a layer is one of a few codewords (product quantization).
FACTS = ("sparsity", "clusters", "qat_ranges", "codebooks")


class Method:
    """A compression method's declaration. Subclasses set the class attributes."""

    name: ClassVar[str]
    title: ClassVar[str]
    help: ClassVar[str]  # one paragraph for the dashboard and the command line
    step_type: ClassVar[type[StepConfig]]
    # Order is data over facts (see FACTS): what it leaves in the model that later stages and the
    # export must keep; ``undoes``: fact -> what running this method after it destroys, in words;
    # ``preserves``: fact -> what is lost if this step runs with preservation off.
    establishes: ClassVar[tuple[str, ...]] = ()
    undoes: ClassVar[dict[str, str]] = {}
    preserves: ClassVar[dict[str, str]] = {}
    # The bool step field that turns preservation off (None: the method always preserves what it can).
    preserve_field: ClassVar[str | None] = None
    # variant name -> one sentence describing it, and -> a short label for charts ("PCQAT")
    variants: ClassVar[dict[str, str]] = {}
    variant_labels: ClassVar[dict[str, str]] = {}
    # Whether the model it returns is a quantization-aware model (exported through its learned ranges).
    produces_qat: ClassVar[bool] = False
    # Where it usually goes in a chain (prune 10, cluster 20, quantize 30); lists sort by it.
    rank: ClassVar[int] = 50
    # Whether the model it returns may name its layers differently (a factorisation that splits them):
    # later steps' layer names are then checked by the engine only, not against the baseline up front.
    renames_layers: ClassVar[bool] = False
    # The numeric parameter a study varies by default (a sweep's "strength"; None: the study must name one).
    strength: ClassVar[str | None] = None

    def variant(self, step: StepConfig, intact: frozenset[str]) -> str:
        """The variant this step runs as, given the facts earlier steps left intact ("sparsity", ...)."""
        return next(iter(self.variants)) if self.variants else self.name

    def variant_label(self, variant: str | None) -> str:
        """A short label for a variant ('' when it is the plain method)."""
        if not variant or variant == self.name:
            return ""
        return self.variant_labels.get(variant, "")

    def describe(self, step: StepConfig, variant: str, kept: list[str]) -> str:
        """One sentence for the plan. ``kept``: what earlier steps made that this one keeps."""
        text = self.variants.get(variant, self.title)
        return f"{text}: keeps {' and '.join(kept)}" if kept else text

    def target_text(self, step: StepConfig) -> str:
        return step.target_text

    def preserving(self, step: StepConfig) -> bool:
        """Whether this step keeps earlier work (its preserve field, where it has one)."""
        return bool(getattr(step, self.preserve_field)) if self.preserve_field else True

    def at_strength(self, step: dict, name: str, value) -> dict:
        """The step (a dict) with parameter ``name`` set to ``value``, for a study's level; a method whose
        other fields must follow (pruning's initial sparsity never above the final) adjusts them here."""
        return dict(step, **{name: value})

    def check_recipe(self, step: StepConfig, recipe, where: str) -> None:
        """Rules that involve the rest of the recipe (e.g. the export mode)."""

    def needs_kernels(self, step: StepConfig) -> bool:
        """Whether ``check_kernels`` has anything to check for this step (the check then builds the model)."""
        return False

    def check_kernels(self, step: StepConfig, kernels: list, where: str) -> list[str]:
        """Rules that need the model's kernels (``recipe.blocks.KernelInfo``: name, type, shape, in model
        order): raise RecipeError (one line) for settings that fit no layer; return a note for each layer
        left out. ``python -m compression check`` and the engine both call it."""
        return []

    def plan_notes(self, step: StepConfig, steps_per_epoch: int, where: str) -> list[str]:
        """What the run will change in this step for this much data (one sentence each); may raise
        RecipeError when the step cannot run on it at all."""
        return []

    def data_notes(self, step: dict, steps_per_epoch: int) -> list[str]:
        """Sentences for the Pipeline page about values the run will compute from the data (``step`` is
        the page's step dict)."""
        return []

    def fit_to_data(self, step: dict, steps_per_epoch: int, end_fraction: float) -> dict:
        """A preset's step (a dict) fitted to this much data; the step itself when nothing depends on it."""
        return step

    def health_hints(self, step: StepConfig, steps_per_epoch: int | None) -> list[Hint]:
        """Causes of a bad result that this step's settings explain (beyond the shared ones)."""
        return []

    def describe_params(self) -> dict:
        defaults = {f.name: f.default for f in fields(self.step_type)}
        fields_ = {name: {"default": to_json_value(defaults[name]), **p.describe()}
                   for name, p in ordered_params(self.step_type).items()}
        return {"name": self.name, "title": self.title, "help": self.help,
                "variants": dict(self.variants), "variant_labels": dict(self.variant_labels),
                "undoes": sorted(self.undoes), "preserves": sorted(self.preserves),
                "establishes": list(self.establishes), "produces_qat": self.produces_qat, "params": fields_}
