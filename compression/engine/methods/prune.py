"""Magnitude pruning with tfmot, fine-tuned under the mask so pruned weights stay zero."""

from __future__ import annotations

import math

import compression  # noqa: F401
import tensorflow_model_optimization as tfmot
import tf_keras

from compression.choices import Schedule
from compression.data import Dataset
from compression.errors import RecipeError
from compression.engine.models import BatchReport, clone, fit, outputs_probabilities
from compression.recipe import PruneStep
from compression.engine.selection import select

sparsity = tfmot.sparsity.keras


def effective_schedule(step: PruneStep, steps_per_epoch: int, where: str = "prune") -> tuple[object, list[str]]:
    """The tfmot schedule, and notes where it had to differ from what was asked.

    tfmot only updates the mask every ``frequency`` steps, so a schedule whose end_step
    is not reached by an update never arrives at final_sparsity. The end step is moved
    onto the last update (and the frequency lowered for short fine-tuning) so the target
    is reached; each change is reported.
    """
    notes: list[str] = []
    total = steps_per_epoch * step.epochs
    begin = step.begin_step
    if begin >= total:
        raise RecipeError(f"{where}.begin_step", f"{begin} is past the end of fine-tuning ({total} steps)")
    freq = step.frequency
    if step.schedule == Schedule.CONSTANT_SPARSITY:
        if freq > total - begin:
            freq = max(1, total - begin)
            notes.append(f"frequency lowered from {step.frequency} to {freq}: fine-tuning has only {total} steps")
        return sparsity.ConstantSparsity(step.target_sparsity, begin_step=begin, frequency=freq), notes
    end = step.end_step if step.end_step is not None else total
    if end > total:
        notes.append(f"end_step {end} is past the end of fine-tuning ({total} steps); using {total}")
        end = total
    # Leave a few steps after the last mask update for the remaining weights to recover.
    span = end - begin
    if freq > span // 2 and span >= 2:
        freq = max(1, span // 4)
        notes.append(f"frequency lowered from {step.frequency} to {freq}: fine-tuning has only {total} steps")
    last_update = begin + (span // freq) * freq
    if last_update != end:
        end = last_update
    if end <= begin:
        end = begin + 1
        freq = 1
    return (sparsity.PolynomialDecay(step.initial_sparsity, step.final_sparsity, begin_step=begin,
                                     end_step=end, frequency=freq), notes)


def apply(model: tf_keras.Model, ds: Dataset, step: PruneStep, *, report: BatchReport | None = None,
          where: str = "prune") -> tuple[tf_keras.Model, list[str]]:
    """A pruned copy of ``model`` (stripped of tfmot wrappers) and notes on the schedule."""
    base = clone(model)
    names = select(base, step.layers, f"{where}.layers")
    steps_per_epoch = math.ceil(len(ds.x_train) / step.batch_size)
    schedule, notes = effective_schedule(step, steps_per_epoch, where)
    kwargs = {"pruning_schedule": schedule}
    if step.sparsity_m_by_n:
        kwargs["sparsity_m_by_n"] = tuple(step.sparsity_m_by_n)

    def wrap(layer):
        return sparsity.prune_low_magnitude(layer, **kwargs) if layer.name in names else layer

    wrapped = tf_keras.models.clone_model(base, clone_function=wrap)
    fit(wrapped, ds, epochs=step.epochs, batch_size=step.batch_size, learning_rate=step.learning_rate,
        report=report, from_logits=not outputs_probabilities(base), callbacks=[sparsity.UpdatePruningStep()])
    return sparsity.strip_pruning(wrapped), notes
