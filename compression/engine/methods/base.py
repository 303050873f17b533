"""The method protocol, executing half: what ``apply`` gets and gives.

A method's declaration (parameters, ordering facts, texts) is
``compression/recipe/methods/<name>.py``; its executor is a module here defining
``EXECUTOR = SomeExecutor()`` with the same ``name`` and
``apply(model, ds, step, ctx) -> StepResult``. ``apply`` clones the model first (tfmot's
wrappers share layer objects and otherwise write into the baseline), fine-tunes, strips its
wrappers and returns the new model, with notes (every change made to what was asked) and
stats (target against achieved), and any facts it hands to later stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar


@dataclass
class StageFacts:
    """What an earlier stage left in the model, for later methods (lottery tickets, preserving variants)."""

    method: str
    variant: str
    masks: dict[str, Any]  # layer name -> bool array, True where the float kernel is nonzero
    centroids: dict[str, Any]  # layer name -> sorted distinct kernel values (layers with at most 256 of them)
    layers: list[str] = field(default_factory=list)  # the model's kernel layers after this stage, in order
    extra: dict[str, Any] = field(default_factory=dict)  # whatever the method handed on (StepResult.facts)


@dataclass
class MethodContext:
    """Everything ``apply`` may use besides the model, the data and its step."""

    baseline: Any  # the baseline Keras model (never modify it)
    initial_weights: list | None  # the baseline's weights before training (None for a loaded model)
    earlier: list[StageFacts]  # the stages before this one, in order
    variant: str  # what the planner chose for this step
    where: str  # "steps[1]": prefix for error messages
    report: Callable | None = None  # per-batch progress (may raise Cancelled)
    cancelled: Callable[[], bool] = lambda: False
    seed: int = 0
    notes: list[str] = field(default_factory=list)  # what fine-tuning added (distillation ...), for the report

    def fit(self, model, ds, step, epochs: int | None = None, **kw) -> None:
        """Fine-tune ``model`` as ``step`` declares it, the way every method does: its optimizer, schedule,
        label smoothing, random shifts, and distillation from the float baseline when the step asks for
        it; per-batch progress (and cancel) through ``report``. ``epochs`` overrides the step's (a pre-training
        pass); ``kw``: callbacks, from_logits."""
        from compression.engine.models import fit

        args = step.training()
        if epochs is not None:
            args["epochs"] = epochs
        teacher = self.baseline if args.get("distill_alpha", 0) > 0 else None
        fit(model, ds, **args, report=self.report, teacher=teacher, seed=self.seed, **kw)
        if teacher is not None:
            note = (f"distilled from the float baseline (weight {args['distill_alpha']:g}, temperature "
                    f"{args['distill_temperature']:g})")
            if note not in self.notes:
                self.notes.append(note)


@dataclass
class StepResult:
    model: Any
    notes: list[str] = field(default_factory=list)  # every change made to what was asked, in words
    stats: dict = field(default_factory=dict)  # {"final_sparsity": {"target": 0.9, "achieved": 0.9001}}
    facts: dict = field(default_factory=dict)  # handed to later stages as StageFacts.extra (e.g. codebooks)


class Executor:
    """Runs one declared method. Subclasses set ``name`` and implement ``apply``."""

    name: ClassVar[str]

    def apply(self, model, ds, step, ctx: MethodContext) -> StepResult:  # pragma: no cover
        raise NotImplementedError


__all__ = ["Executor", "MethodContext", "StageFacts", "StepResult"]
