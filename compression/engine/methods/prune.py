"""Magnitude pruning, executed: tfmot.sparsity.keras.prune_low_magnitude, fine-tuned under the mask.

The declaration (parameters, schedule plan, ordering facts) is compression/recipe/methods/prune.py.
"""

from __future__ import annotations

from compression.engine.methods.base import Executor, MethodContext, StepResult
from compression.errors import RecipeError
from compression.recipe.choices import Schedule
from compression.recipe.methods.prune import PruneStep, SchedulePlan, cycle_targets, schedule_plan
from compression.recipe.training import steps_per_epoch


class PruneExecutor(Executor):
    name = "prune"

    def apply(self, model, ds, step: PruneStep, ctx: MethodContext) -> StepResult:
        import tensorflow_model_optimization as tfmot
        import tf_keras

        from compression.engine.models import clone, outputs_probabilities
        from compression.engine.selection import check_per_layer_maps, select, skipped_layers

        sparsity = tfmot.sparsity.keras
        base = clone(model)
        names = select(base, step.layers, f"{ctx.where}.layers")
        check_per_layer_maps(base, step, ctx.where)
        plan = schedule_plan(step, steps_per_epoch(len(ds.x_train), step.batch_size), ctx.where)

        def schedule_for(layer: str):
            if step.schedule == Schedule.CONSTANT_SPARSITY:
                return sparsity.ConstantSparsity(step.target_for(layer), begin_step=plan.begin_step,
                                                 frequency=plan.frequency)
            if plan.cycles > 1:
                return cycles_schedule(sparsity, plan, step.initial_sparsity, step.target_for(layer))
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
        ctx.fit(wrapped, ds, step, from_logits=not outputs_probabilities(base),
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
        """Target against achieved, per layer and over the pruned layers as a whole: the overall
        figures weigh each layer by its size (the share of the pruned layers' weights that are zero,
        against the share the per-layer targets ask for)."""
        import numpy as np

        from compression.engine.selection import chosen_kernels

        kernels = chosen_kernels(model, names)
        per_layer = {name: {"target": round(step.target_for(name), 6),
                            "achieved": round(float(1 - np.count_nonzero(k) / k.size), 6), "weights": int(k.size)}
                     for name, k in kernels.items()}
        key = "sparsity_m_by_n" if step.sparsity_m_by_n else (
            "target_sparsity" if step.schedule == Schedule.CONSTANT_SPARSITY else "final_sparsity")
        total = sum(v["weights"] for v in per_layer.values())
        target = sum(v["target"] * v["weights"] for v in per_layer.values()) / total if total else None
        achieved = sum(v["achieved"] * v["weights"] for v in per_layer.values()) / total if total else None
        return {key: {"target": None if target is None else round(target, 6),
                      "achieved": None if achieved is None else round(achieved, 6),
                      "over": "the pruned layers' weights", "per_layer": per_layer}}


def cycles_schedule(sparsity, plan: SchedulePlan, initial: float, final: float):
    """Iterative pruning as a tfmot PruningSchedule: compression.recipe.methods.prune.cycles_sparsity
    in TensorFlow (each cycle rises like PolynomialDecay over its ramp, then holds); the mask is
    updated every ``plan.frequency`` steps from begin to end, so each ramp ends on an update."""
    import tensorflow as tf

    targets = cycle_targets(initial, final, plan.cycles)
    starts = [min(initial, final)] + targets[:-1]

    class Cycles(sparsity.PruningSchedule):
        def __call__(self, step):
            rel = tf.cast(step, tf.int64) - plan.begin_step
            c = tf.clip_by_value(tf.math.floordiv(tf.maximum(rel, 0), plan.cycle_steps), 0, plan.cycles - 1)
            frac = tf.clip_by_value(tf.cast(tf.maximum(rel, 0) - c * plan.cycle_steps, tf.float32) / plan.ramp_steps,
                                    0.0, 1.0)
            target, start = tf.gather(targets, c), tf.gather(starts, c)
            value = tf.cast(target + (start - target) * (1.0 - frac) ** 3, tf.float32)
            should = self._should_prune_in_step(step, plan.begin_step, plan.end_step, plan.frequency)
            return should, value

        def get_config(self):
            return {"class_name": "Cycles", "config": {"initial": initial, "final": final, "cycles": plan.cycles}}

    return Cycles()


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


EXECUTOR = PruneExecutor()
