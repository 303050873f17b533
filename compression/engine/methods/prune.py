"""Magnitude pruning (tfmot.sparsity.keras.prune_low_magnitude), fine-tuned under the mask."""

from __future__ import annotations

import math
from dataclasses import dataclass

from compression.choices import LayerScope, Schedule
from compression.engine.methods.base import (
    LayerSelection,
    Method,
    MethodContext,
    PerLayer,
    StepConfig,
    StepResult,
    declared_default,
    param,
    per_layer_value,
)
from compression.errors import RecipeError

SPARSITY = dict(lo=0, hi=1, hi_open=True, unit="fraction")


@dataclass(frozen=True)
class PruneStep(StepConfig):
    method = "prune"

    schedule: Schedule = param(Schedule.POLYNOMIAL_DECAY, "polynomial_decay raises sparsity gradually from "
                               "initial to final; constant_sparsity holds one target from begin_step on",
                               label="Sparsity schedule")
    initial_sparsity: float = param(0.5, "polynomial_decay: sparsity at begin_step", **SPARSITY,
                                    show_if=("schedule", "polynomial_decay"))
    final_sparsity: float | PerLayer = param(0.8, "polynomial_decay: sparsity reached at end_step; a number, or "
                                             "{layer name: number} per layer", kind="per_layer_float", **SPARSITY,
                                             show_if=("schedule", "polynomial_decay"))
    target_sparsity: float | PerLayer = param(0.5, "constant_sparsity: the sparsity held; a number, or "
                                              "{layer name: number} per layer", kind="per_layer_float", **SPARSITY,
                                              show_if=("schedule", "constant_sparsity"))
    begin_step: int = param(0, "optimizer step at which pruning starts", lo=0, unit="steps", advanced=True)
    end_step: int | None = param(None, "polynomial_decay: step at which final_sparsity is reached; "
                                 "null: the end of fine-tuning", kind="int", lo=1, nullable=True, unit="steps",
                                 advanced=True, show_if=("schedule", "polynomial_decay"))
    frequency: int = param(100, "optimizer steps between mask updates (lowered, with a note, when fine-tuning "
                           "is too short for it)", lo=1, unit="steps", advanced=True, label="Mask update every")
    sparsity_m_by_n: tuple[int, int] | None = param(None, "structured sparsity: M zeros in every N consecutive "
                                                    "weights, e.g. [2, 4]; replaces the schedule's target",
                                                    kind="pair", lo=1, hi=32, nullable=True,
                                                    label="Structured sparsity (M:N)")
    layers: LayerSelection = param(LayerSelection(), "which layers with weights to prune", kind="layers")
    epochs: int = param(2, "fine-tuning epochs under the mask", lo=1, hi=1000, unit="epochs")
    # tfmot's pruning example fine-tunes with Adam's default; 1e-4 did not recover accuracy
    learning_rate: float = param(1e-3, "Adam's learning rate while fine-tuning", lo=0, hi=1, lo_open=True)

    def check(self, where: str) -> None:
        if self.end_step is not None and self.end_step <= self.begin_step:
            raise RecipeError(f"{where}.end_step", f"{self.end_step} must be after begin_step {self.begin_step}")
        if self.schedule == Schedule.POLYNOMIAL_DECAY:
            finals = self.final_sparsity.as_dict() if isinstance(self.final_sparsity, PerLayer) else \
                {None: self.final_sparsity}
            for layer, final in finals.items():
                if final < self.initial_sparsity:
                    field = f"{where}.final_sparsity" + (f".{layer}" if layer else "")
                    raise RecipeError(field, f"{final:g} is below initial_sparsity {self.initial_sparsity:g}; "
                                             "polynomial_decay only raises sparsity")
        if self.sparsity_m_by_n is not None:
            m, n = self.sparsity_m_by_n
            if not (0 < m < n <= 32):
                raise RecipeError(f"{where}.sparsity_m_by_n", f"[{m}, {n}] needs 0 < M < N <= 32, e.g. [2, 4]")

    def target_for(self, layer: str) -> float:
        """The sparsity this step aims at in ``layer``."""
        if self.sparsity_m_by_n:
            m, n = self.sparsity_m_by_n
            return m / n
        if self.schedule == Schedule.CONSTANT_SPARSITY:
            return per_layer_value(self.target_sparsity, layer, declared_default(PruneStep, "target_sparsity"))
        return per_layer_value(self.final_sparsity, layer, declared_default(PruneStep, "final_sparsity"))

    @property
    def target(self) -> float:
        """The sparsity this step aims at (the largest, where it is set per layer)."""
        if self.sparsity_m_by_n:
            m, n = self.sparsity_m_by_n
            return m / n
        value = self.target_sparsity if self.schedule == Schedule.CONSTANT_SPARSITY else self.final_sparsity
        return max(value.as_dict().values()) if isinstance(value, PerLayer) else value

    @property
    def target_text(self) -> str:
        if self.sparsity_m_by_n:
            return f"{self.sparsity_m_by_n[0]}:{self.sparsity_m_by_n[1]} structured sparsity"
        value = self.target_sparsity if self.schedule == Schedule.CONSTANT_SPARSITY else self.final_sparsity
        if isinstance(value, PerLayer):
            other = declared_default(PruneStep, "target_sparsity" if self.schedule == Schedule.CONSTANT_SPARSITY
                                     else "final_sparsity")
            return ("per-layer sparsity (" + ", ".join(f"{k} {v:.0%}" for k, v in value.items)
                    + f", other layers {other:.0%})")
        return f"{value:.0%} sparsity"


# --- the schedule, without TensorFlow (the dashboard checks it live) ---------------------------


@dataclass(frozen=True)
class SchedulePlan:
    begin_step: int
    end_step: int | None  # None for constant_sparsity
    frequency: int
    total_steps: int
    notes: tuple[str, ...]  # every change made to what was asked


def schedule_plan(step: PruneStep, steps_per_epoch: int, where: str = "prune") -> SchedulePlan:
    """The schedule pruning will really run, and notes where it had to differ from what was asked.

    tfmot updates the mask only every ``frequency`` steps, so a schedule whose end_step is
    not reached by an update never arrives at final_sparsity, and one that updates once
    jumps to the target with no time to recover. The end step is moved onto the last
    update and the frequency lowered (to a quarter of the span) when fine-tuning is too
    short for it; each change is a note. The engine runs this plan; the Pipeline page
    shows the same notes before anything runs.
    """
    notes: list[str] = []
    total = max(1, steps_per_epoch) * step.epochs
    begin = step.begin_step
    if begin >= total:
        raise RecipeError(f"{where}.begin_step", f"{begin} is past the end of fine-tuning ({total} steps)")
    freq = step.frequency
    if step.schedule == Schedule.CONSTANT_SPARSITY:
        if freq > total - begin:
            freq = max(1, total - begin)
            notes.append(f"frequency lowered from {step.frequency} to {freq}: fine-tuning has only {total} steps")
        return SchedulePlan(begin, None, freq, total, tuple(notes))
    end = step.end_step if step.end_step is not None else total
    if end > total:
        notes.append(f"end_step {end} is past the end of fine-tuning ({total} steps); using {total}")
        end = total
    span = end - begin
    if freq > span // 2 and span >= 2:
        # one or two updates would jump to the target: leave steps after each update to recover
        freq = max(1, span // 4)
        notes.append(f"frequency lowered from {step.frequency} to {freq}: the sparsity would otherwise jump "
                     f"to its target in one or two mask updates over {span} steps")
    last_update = begin + (span // freq) * freq
    if last_update != end:
        if step.end_step is not None:
            notes.append(f"end_step moved from {end} to {last_update}, the last mask update, so the target is reached")
        end = last_update
    if end <= begin:
        end, freq = begin + 1, 1
    return SchedulePlan(begin, end, freq, total, tuple(notes))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, math.ceil(n_train / batch_size))


# --- the method -------------------------------------------------------------------------------------


class Prune(Method):
    name = "prune"
    rank = 10
    title = "Prune"
    help = ("Magnitude pruning sets the smallest weights of each chosen layer to exactly zero, step by step "
            "while fine-tuning, so the rest of the network learns to do without them. Zeros compress well "
            "(zip, or the Deep Compression container) but a raw .tflite file stores them like any weight.")
    step_type = PruneStep
    undoes = {
        "cluster": "pruning after clustering zeroes weights and fine-tunes the rest freely, "
                   "so the clusters are lost (many distinct values again)",
        "quantize": "pruning after quantization-aware training changes the weights QAT trained for int8 "
                    "and drops its learned quantization ranges",
    }
    variants = {"prune": "Pruning"}

    def describe(self, step: PruneStep, variant: str, kept: list[str]) -> str:
        return f"Pruning to {step.target_text}"

    def apply(self, model, ds, step: PruneStep, ctx: MethodContext) -> StepResult:
        import tensorflow_model_optimization as tfmot
        import tf_keras

        from compression.engine.models import clone, fit, outputs_probabilities
        from compression.engine.selection import check_per_layer_maps, select

        sparsity = tfmot.sparsity.keras
        base = clone(model)
        names = select(base, step.layers, f"{ctx.where}.layers")
        check_per_layer_maps(base, step, ctx.where)
        plan = schedule_plan(step, steps_per_epoch(len(ds.x_train), step.batch_size), ctx.where)

        def schedule_for(layer: str):
            if step.schedule == Schedule.CONSTANT_SPARSITY:
                return sparsity.ConstantSparsity(step.target_for(layer), begin_step=plan.begin_step,
                                                 frequency=plan.frequency)
            return sparsity.PolynomialDecay(min(step.initial_sparsity, step.target_for(layer)),
                                            step.target_for(layer), begin_step=plan.begin_step,
                                            end_step=plan.end_step, frequency=plan.frequency)

        notes = list(plan.notes)
        skipped = skipped_layers(base, names, "prune")
        if skipped:
            names = names - set(skipped)
            notes.append("not pruned: " + "; ".join(f"{n} ({why})" for n, why in skipped.items()))
            if not names:
                raise RecipeError(f"{ctx.where}.layers", "selects no layer tfmot can prune")
        prunable_dw = _prunable_depthwise(sparsity, tf_keras)

        def wrap(layer):
            if layer.name not in names:
                return layer
            kwargs = {"pruning_schedule": schedule_for(layer.name)}
            if step.sparsity_m_by_n:
                kwargs["sparsity_m_by_n"] = tuple(step.sparsity_m_by_n)
            if type(layer) is tf_keras.layers.DepthwiseConv2D:
                layer = _twin(layer, prunable_dw)
            return sparsity.prune_low_magnitude(layer, **kwargs)

        wrapped = tf_keras.models.clone_model(base, clone_function=wrap)
        fit(wrapped, ds, **step.training(), report=ctx.report, from_logits=not outputs_probabilities(base),
            callbacks=[sparsity.UpdatePruningStep()])
        pruned = sparsity.strip_pruning(wrapped)
        if any(isinstance(layer, prunable_dw) for layer in pruned.layers):
            pruned = _plain_depthwise(pruned, prunable_dw, tf_keras)
        stats = self._stats(pruned, step, names)
        for name, why in skipped.items():
            stats[next(iter(stats))]["per_layer"][name] = {"skipped": why}
        return StepResult(pruned, notes, stats)

    @staticmethod
    def _stats(model, step: PruneStep, names: set[str]) -> dict:
        import numpy as np

        from compression.engine.selection import chosen_kernels

        per_layer = {name: {"target": round(step.target_for(name), 6),
                            "achieved": round(float(1 - np.count_nonzero(k) / k.size), 6)}
                     for name, k in chosen_kernels(model, names).items()}
        key = "sparsity_m_by_n" if step.sparsity_m_by_n else (
            "target_sparsity" if step.schedule == Schedule.CONSTANT_SPARSITY else "final_sparsity")
        achieved = [v["achieved"] for v in per_layer.values()]
        return {key: {"target": round(step.target, 6), "achieved": round(min(achieved), 6) if achieved else None,
                      "per_layer": per_layer}}


def skipped_layers(model, names: set[str], method: str) -> dict[str, str]:
    """Selected layers tfmot's registry leaves alone, with the reason, in model order.

    tfmot 0.8.1 lists DepthwiseConv2D with no prunable or clusterable weights; pruning here
    prunes its depthwise kernel anyway (as a tfmot PrunableLayer), clustering skips it."""
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import (
        ClusteringRegistry,
    )
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    registry = PruneRegistry if method == "prune" else ClusteringRegistry
    out = {}
    for layer in model.layers:
        if layer.name not in names:
            continue
        cls = layer.__class__.__name__
        if method == "prune" and cls == "DepthwiseConv2D":
            continue
        weights = registry._LAYERS_WEIGHTS_MAP.get(layer.__class__)
        if weights is None and not registry.supports(layer):
            out[layer.name] = f"tfmot cannot {method} a {cls} layer"
        elif weights == []:
            why = " (tfmot: unrecoverable accuracy loss)" if method == "cluster" and cls == "DepthwiseConv2D" else ""
            out[layer.name] = f"tfmot does not {method} {cls} kernels{why}"
    return out


def _prunable_depthwise(sparsity, tf_keras):
    """DepthwiseConv2D as a tfmot PrunableLayer whose prunable weight is its depthwise kernel."""

    class PrunableDepthwiseConv2D(tf_keras.layers.DepthwiseConv2D, sparsity.PrunableLayer):
        def get_prunable_weights(self):
            return [self.depthwise_kernel]

    return PrunableDepthwiseConv2D


def _twin(layer, cls):
    """A copy of ``layer`` as class ``cls`` (same config), with its weights."""
    twin = cls.from_config(layer.get_config())
    twin.build(layer.input_shape)
    twin.set_weights(layer.get_weights())
    return twin


def _plain_depthwise(model, prunable_cls, tf_keras):
    """The model with every PrunableDepthwiseConv2D back as a plain DepthwiseConv2D (saveable, loadable)."""
    made = {}

    def back(layer):
        if isinstance(layer, prunable_cls):
            made[layer.name] = (tf_keras.layers.DepthwiseConv2D.from_config(layer.get_config()), layer)
            return made[layer.name][0]
        return layer

    out = tf_keras.models.clone_model(model, clone_function=back)
    for plain, old in made.values():
        plain.set_weights(old.get_weights())
    return out


METHOD = Prune()

__all__ = ["METHOD", "PruneStep", "SchedulePlan", "schedule_plan", "steps_per_epoch", "LayerScope"]
