"""One lottery-ticket round, executed: magnitude mask from the trained model, rewind, train under the mask.

The declaration (parameters, what each control means) is compression/recipe/methods/lottery.py.
The mask is held by re-applying it after every optimizer step (a pruned weight's update is
wiped before the next forward pass, so it never takes part), and the validation loss is
checked every ``eval_every`` iterations to find the early-stopping iteration.
"""

from __future__ import annotations

import functools

import numpy as np

from compression.engine.methods.base import Executor, MethodContext, StepResult
from compression.errors import RecipeError
from compression.recipe.methods.lottery import Control, LotteryStep, Rewind
from compression.recipe.training import steps_per_epoch


def magnitude_mask(kernel: np.ndarray, rate: float) -> np.ndarray:
    """The mask after pruning ``rate`` of the surviving (nonzero) weights with the smallest magnitude.

    Ties are broken by position (a stable sort), so the same trained kernel always gives the same mask."""
    alive = kernel != 0
    survivors = int(alive.sum())
    cut = int(round(survivors * rate))
    mask = alive.copy()
    if cut <= 0:
        return mask
    flat = np.where(alive, np.abs(kernel), np.inf).ravel()
    order = np.argsort(flat, kind="stable")[:cut]
    mask.ravel()[order] = False
    return mask


def random_mask_like(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random mask keeping as many weights as ``mask`` does, anywhere in the kernel."""
    keep = int(mask.sum())
    out = np.zeros(mask.size, dtype=bool)
    out[rng.permutation(mask.size)[:keep]] = True
    return out.reshape(mask.shape)


class LotteryExecutor(Executor):
    name = "lottery"

    def apply(self, model, ds, step: LotteryStep, ctx: MethodContext) -> StepResult:
        import tf_keras

        from compression.engine.metrics import kernel_of, weight_layers
        from compression.engine.models import clone, fit, outputs_probabilities
        from compression.engine.selection import select

        base = clone(model)
        names = select(base, step.layers, f"{ctx.where}.layers")
        layers = [layer for layer in weight_layers(base) if layer.name in names]
        output = weight_layers(base)[-1].name  # the layer the paper prunes at half the rate
        trained = {layer.name: kernel_of(layer).numpy() for layer in layers}
        masks = {name: magnitude_mask(k, step.rate_for(name == output)) for name, k in trained.items()}
        notes: list[str] = []

        if step.control == Control.REINIT:
            fresh = tf_keras.models.clone_model(base)  # every layer drawn anew from its initializer
            start = fresh.get_weights()
            notes.append("reinit control: the ticket's mask with freshly drawn random weights")
        else:
            if ctx.initial_weights is None:
                raise RecipeError(f"{ctx.where}.rewind", "needs the baseline's initial weights (baseline_init.npz "
                                                         "beside a baseline trained by the studio); this baseline "
                                                         "was loaded without them")
            start = [w.copy() for w in ctx.initial_weights]
            if step.rewind == Rewind.ITERATION:
                start = self._late_rewind_point(base, start, ds, step, ctx, fit, outputs_probabilities)
                notes.append(f"late rewinding: the survivors restart from the dense network's weights after "
                             f"{step.rewind_iteration} iterations from its initial weights (trained again in this run)")
            if step.control == Control.RANDOM_MASK:
                rng = np.random.default_rng(ctx.seed)
                masks = {name: random_mask_like(m, rng) for name, m in masks.items()}
                notes.append("random-mask control: as many weights per layer as the ticket keeps, chosen at random, "
                             "rewound like the ticket")
        base.set_weights(start)
        variables = {layer.name: kernel_of(layer) for layer in layers}
        for name, var in variables.items():
            var.assign(var.numpy() * masks[name])

        keep_mask, _, early_stop = _callbacks()
        tracker = early_stop(base, ds, step.eval_every, from_logits=not outputs_probabilities(base))
        keep = keep_mask(variables, masks)
        ctx.fit(base, ds, step, from_logits=not outputs_probabilities(base), callbacks=[keep, tracker])
        tracker.finish()
        return StepResult(base, notes, self._stats(step, trained, masks, variables, tracker, output))

    @staticmethod
    def _late_rewind_point(model, initial, ds, step, ctx, fit, outputs_probabilities):
        import tf_keras

        dense = tf_keras.models.clone_model(model)
        dense.set_weights(initial)
        spe = steps_per_epoch(len(ds.x_train), step.batch_size)
        epochs = -(-step.rewind_iteration // spe)
        stop = _callbacks()[1](step.rewind_iteration, ctx.report)
        fit(dense, ds, epochs=epochs, batch_size=step.batch_size, learning_rate=step.learning_rate,
            from_logits=not outputs_probabilities(model), callbacks=[stop])
        return dense.get_weights()

    @staticmethod
    def _stats(step, trained, masks, variables, tracker, output) -> dict:
        per_layer = {}
        for name, mask in masks.items():
            k = variables[name].numpy()
            before = 1 - np.count_nonzero(trained[name]) / trained[name].size
            per_layer[name] = {"target": round(1 - float(mask.sum()) / mask.size, 6),
                               "achieved": round(float(1 - np.count_nonzero(k) / k.size), 6),
                               "before": round(float(before), 6), "weights": int(k.size),
                               "rate": step.rate_for(name == output)}
        total = sum(v["weights"] for v in per_layer.values())
        target = sum(v["target"] * v["weights"] for v in per_layer.values()) / total
        achieved = sum(v["achieved"] * v["weights"] for v in per_layer.values()) / total
        return {"sparsity": {"target": round(target, 6), "achieved": round(achieved, 6),
                             "over": "the pruned layers' weights", "per_layer": per_layer},
                "early_stop": tracker.summary(), "control": step.control.value, "rewind": step.rewind.value}


@functools.lru_cache(maxsize=1)
def _callbacks():
    """The callback classes, made on first use (importing this module must not load TensorFlow)."""
    import tensorflow as tf
    import tf_keras

    class KeepMask(tf_keras.callbacks.Callback):
        """Re-applies each mask after every optimizer step."""

        def __init__(self, variables: dict, masks: dict):
            super().__init__()
            self.pairs = [(var, tf.constant(masks[name], dtype=var.dtype)) for name, var in variables.items()]

        def on_train_batch_end(self, batch, logs=None):
            for var, mask in self.pairs:
                var.assign(var * mask)

    class StopAfter(tf_keras.callbacks.Callback):
        """Stops training after ``iterations`` optimizer steps (the late-rewinding point)."""

        def __init__(self, iterations: int, report):
            super().__init__()
            self.left, self.report = iterations, report

        def on_train_batch_end(self, batch, logs=None):
            self.left -= 1
            if self.report is not None and self.left % 50 == 0:  # a cancel is seen here too
                self.report(1, 1, 0, 1, None, None)
            if self.left <= 0:
                self.model.stop_training = True

    class EarlyStop(tf_keras.callbacks.Callback):
        """The validation loss every ``every`` iterations; the early-stopping iteration is its minimum."""

        def __init__(self, model, ds, every: int, from_logits: bool):
            super().__init__()
            self.net, self.x, self.y, self.every, self.logits = model, ds.x_val, ds.y_val, every, from_logits
            self.iteration = 0
            self.trace: list[tuple[int, float, float]] = []

        def _evaluate(self) -> None:
            if not len(self.x):
                return
            out = np.concatenate([np.asarray(self.net(self.x[i:i + 2048], training=False))
                                  for i in range(0, len(self.x), 2048)]).astype(np.float64)
            if self.logits:
                out = out - out.max(axis=1, keepdims=True)
                logp = out - np.log(np.exp(out).sum(axis=1, keepdims=True))
            else:
                logp = np.log(np.clip(out, 1e-12, 1.0))
            loss = float(-logp[np.arange(len(self.y)), self.y].mean())
            acc = float((out.argmax(axis=1) == self.y).mean())
            self.trace.append((self.iteration, round(loss, 6), round(acc, 6)))

        def on_train_batch_end(self, batch, logs=None):
            self.iteration += 1
            if self.iteration % self.every == 0:
                self._evaluate()

        def finish(self) -> None:
            if not self.trace or self.trace[-1][0] != self.iteration:
                self._evaluate()

        def summary(self) -> dict:
            if not self.trace:
                return {"iteration": None, "val_loss": None, "val_accuracy": None, "iterations": self.iteration,
                        "every": self.every, "trace": []}
            best = min(self.trace, key=lambda t: (t[1], t[0]))
            return {"iteration": best[0], "val_loss": best[1], "val_accuracy": best[2],
                    "iterations": self.iteration, "every": self.every, "trace": [list(t) for t in self.trace]}

    return KeepMask, StopAfter, EarlyStop


EXECUTOR = LotteryExecutor()
