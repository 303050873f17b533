"""A throwaway method that renames layers: low-rank factorisation of Dense kernels.

Each chosen Dense layer ``fc1`` (kernel in x out) becomes two, ``fc1_u`` (in x rank, linear, no
bias) and ``fc1_v`` (rank x out, the original activation and bias), from the truncated SVD of its
kernel, then the model is fine-tuned. One module: the declaration (recipe layer) and the executor
(engine layer), registered with ``register()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.engine import methods as executors
from compression.engine.methods.base import Executor, MethodContext, StepResult
from compression.errors import RecipeError
from compression.recipe import methods
from compression.recipe.method import Method, StepConfig
from compression.recipe.params import LayerSelection, param


@dataclass(frozen=True)
class LowRankStep(StepConfig):
    method = "lowrank"

    rank: int = param(8, "inner dimension of each factorised kernel", lo=1, hi=4096, unit="dimensions")
    layers: LayerSelection = param(LayerSelection(), "which Dense layers to factorise", kind="layers")
    epochs: int = param(1, "fine-tuning epochs after factorising", lo=1, hi=1000, unit="epochs")

    @property
    def target_text(self) -> str:
        return f"rank {self.rank}"


class LowRank(Method):
    name = "lowrank"
    title = "Low-rank factorisation"
    help = "Replaces each Dense kernel by the product of two thin ones (truncated SVD), then fine-tunes."
    step_type = LowRankStep
    rank = 5  # before pruning
    undoes = {"sparsity": "factorising a pruned layer multiplies two dense factors, so its zeros are gone",
              "clusters": "factorising a clustered layer gives factors with many distinct values",
              "qat_ranges": "factorising after quantization-aware training drops its learned ranges"}
    variants = {"lowrank": "Low-rank factorisation"}
    renames_layers = True  # fc1 becomes fc1_u and fc1_v: later steps name the new layers

    def describe(self, step, variant, kept):
        return f"Factorising Dense kernels to {step.target_text}"


class LowRankExecutor(Executor):
    name = "lowrank"

    def apply(self, model, ds, step: LowRankStep, ctx: MethodContext) -> StepResult:
        import numpy as np
        import tf_keras

        from compression.engine.models import outputs_probabilities
        from compression.engine.selection import select

        chosen = select(model, step.layers, f"{ctx.where}.layers")
        x = inputs = tf_keras.Input(shape=model.input_shape[1:], name=model.layers[0].name)
        renamed, achieved, copies = {}, {}, []
        for layer in model.layers[1:]:
            if len(layer._inbound_nodes) != 1:
                raise RecipeError(f"{ctx.where}", "lowrank takes a plain chain of layers")
            if layer.name in chosen and isinstance(layer, tf_keras.layers.Dense):
                kernel, bias = layer.get_weights()
                r = min(step.rank, *kernel.shape)
                u, s, vt = np.linalg.svd(kernel, full_matrices=False)
                first = tf_keras.layers.Dense(r, use_bias=False, name=f"{layer.name}_u")
                second = tf_keras.layers.Dense(kernel.shape[1], activation=layer.activation, name=f"{layer.name}_v")
                x = second(first(x))
                copies += [(first, [u[:, :r] * s[:r]]), (second, [vt[:r], bias])]
                renamed[layer.name] = [first.name, second.name]
                achieved[layer.name] = r
            else:
                clone = layer.__class__.from_config(layer.get_config())
                x = clone(x)
                copies.append((clone, layer.get_weights()))
        out = tf_keras.Model(inputs, x, name=model.name)
        for layer, weights in copies:
            layer.set_weights(weights)
        ctx.fit(out, ds, step, from_logits=not outputs_probabilities(model))
        return StepResult(out, [f"{old} became {' and '.join(new)}" for old, new in renamed.items()],
                          {"rank": {"target": step.rank, "achieved": max(achieved.values()), "per_layer": {
                              k: {"target": step.rank, "achieved": v} for k, v in achieved.items()}}},
                          facts={"renamed": renamed})


def register() -> None:
    methods.register(LowRank(), replace=True)
    executors.register(LowRankExecutor(), replace=True)


def unregister() -> None:
    methods.unregister("lowrank")
    executors.unregister("lowrank")
