"""Quantization, executed. The declaration is compression/recipe/methods/quantize.py.

* int8 QAT: tfmot.quantization.keras in the variant that keeps earlier work (PQAT, CQAT, PCQAT); the
  model stays a QAT model and is exported through the ranges it learned.
* 4- and 2-bit QAT: tfmot's quantize_apply with a quantize config of our own (``LastValueQuantizer`` at
  ``weight_bits``, symmetric, narrow range: 15 or 3 levels; per output channel or per layer; weights
  only; pruned weights held at zero by a fixed mask). The TFLite converter folds a 4-bit fake-quant
  into float32 constants, so the step ends with a plain float model whose kernels are on the grid;
  the int8 export then stores exactly those levels.
* Quant-Noise: the chosen layers train inside ``engine.quantnoise.ScalarNoise`` (a share of blocks on
  the grid in each pass, straight-through) and end on the grid.
* Rounded: the kernels put on the grid, no training (the control).
"""

from __future__ import annotations

import numpy as np

from compression.engine.methods.base import Executor, MethodContext, StepResult
from compression.recipe.blocks import BLOCK_TYPES
from compression.recipe.choices import Granularity, LayerScope
from compression.recipe.methods.quantize import QuantizeStep, levels, noise_blocks


class QuantizeExecutor(Executor):
    name = "quantize"

    def apply(self, model, ds, step: QuantizeStep, ctx: MethodContext) -> StepResult:
        if step.mode == "qat":
            return self._int8_qat(model, ds, step, ctx)
        return self._low_bit(model, ds, step, ctx)

    @staticmethod
    def _int8_qat(model, ds, step: QuantizeStep, ctx: MethodContext) -> StepResult:
        import tensorflow_model_optimization as tfmot
        import tf_keras

        from compression.engine.models import clone, outputs_probabilities
        from compression.engine.selection import select

        quantize = tfmot.quantization.keras
        combine = tfmot.experimental.combine
        scheme = {
            "pqat": lambda: combine.Default8BitPrunePreserveQuantizeScheme(),
            "cqat": lambda: combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False),
            "pcqat": lambda: combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
        }.get(ctx.variant)
        base = clone(model)
        if step.layers.scope == LayerScope.ALL:
            annotated = quantize.quantize_annotate_model(base)
        else:
            names = select(base, step.layers, f"{ctx.where}.layers")
            annotated = tf_keras.models.clone_model(
                base,
                clone_function=lambda layer: quantize.quantize_annotate_layer(layer) if layer.name in names else layer)
        with quantize.quantize_scope():
            qat = quantize.quantize_apply(annotated, scheme()) if scheme else quantize.quantize_apply(annotated)
        ctx.fit(qat, ds, step, from_logits=not outputs_probabilities(base))
        return StepResult(qat, [], {"variant": {"target": ctx.variant, "achieved": ctx.variant}})

    def _low_bit(self, model, ds, step: QuantizeStep, ctx: MethodContext) -> StepResult:
        from compression.engine.metrics import kernel_of
        from compression.engine.models import clone
        from compression.engine.quantnoise import to_grid
        from compression.engine.selection import kernel_infos, select

        base = clone(model)
        chosen = select(base, step.layers, f"{ctx.where}.layers")
        per_channel = step.granularity == Granularity.PER_CHANNEL
        notes = []
        by_name = {layer.name: layer for layer in base.layers}
        unsupported = [k for k in kernel_infos(base) if k.name in chosen and k.type not in BLOCK_TYPES]
        if unsupported:
            notes.append("not quantized below int8 here (their kernel's last axis is not the output channels): "
                         + ", ".join(f"{k.name} ({k.type})" for k in unsupported) + "; the export stores them as int8")
        grid_layers = sorted((chosen - {k.name for k in unsupported}),
                             key=[layer.name for layer in base.layers].index)
        if not grid_layers:
            from compression.errors import RecipeError

            raise RecipeError(f"{ctx.where}.layers", f"selects no layer that can take {step.weight_bits}-bit weights "
                                                     f"({', '.join(BLOCK_TYPES)})")
        # pruned weights (exact zeros) are held at zero: every level keeps zero, and the noise never draws them
        masks = {}
        if step.preserve:
            for name in grid_layers:
                k = kernel_of(by_name[name]).numpy()
                if (k == 0).any():
                    masks[name] = k != 0

        if step.mode == "rounded":
            out = base
        elif step.mode == "quant_noise":
            out, more = self._quant_noise(base, ds, step, ctx, set(grid_layers), masks, per_channel)
            notes += more
        else:
            out = self._tfmot_low_bit(base, ds, step, ctx, set(grid_layers), masks, per_channel)
        # at export every weight is quantized: every chosen kernel ends on the grid
        for layer in out.layers:
            if layer.name in grid_layers:
                kernel = kernel_of(layer)
                k = kernel.numpy()
                if layer.name in masks:
                    k = np.where(masks[layer.name], k, 0)
                kernel.assign(to_grid(k, step.weight_bits, per_channel))
        return StepResult(out, notes, self._stats(out, step, grid_layers, ctx.variant))

    @staticmethod
    def _quant_noise(base, ds, step: QuantizeStep, ctx: MethodContext, names: set[str], masks: dict,
                     per_channel: bool):
        from compression.engine.models import outputs_probabilities
        from compression.engine.quantnoise import strip, to_grid, wrap_model, wrappers
        from compression.engine.selection import kernel_infos

        plan = noise_blocks(step, kernel_infos(base), names, ctx.where)
        notes = [f"{n}; it is rounded without noise" for n in plan.notes]
        scalar = wrappers()["ScalarNoise"]

        def wrap(layer, fresh):
            if layer.name not in plan.layers:
                return None
            return scalar(fresh, step.quant_noise, plan.layers[layer.name][0], step.weight_bits, per_channel,
                          masks.get(layer.name), name=f"quant_noise_{layer.name}")

        wrapped = wrap_model(base, wrap)
        ctx.fit(wrapped, ds, step, from_logits=not outputs_probabilities(base))
        return strip(wrapped, lambda w: to_grid(w.masked().numpy(), step.weight_bits, per_channel)), notes

    @staticmethod
    def _tfmot_low_bit(base, ds, step: QuantizeStep, ctx: MethodContext, names: set[str], masks: dict,
                       per_channel: bool):
        import tensorflow_model_optimization as tfmot
        import tf_keras

        from compression.engine.models import float_copy, outputs_probabilities

        quantize = tfmot.quantization.keras
        config_cls, quantizer_cls = _low_bit_config()
        annotated = tf_keras.models.clone_model(
            base, clone_function=lambda layer: quantize.quantize_annotate_layer(
                layer.__class__.from_config(layer.get_config()),
                config_cls(step.weight_bits, per_channel)) if layer.name in names else
            layer.__class__.from_config(layer.get_config()))
        annotated.set_weights(base.get_weights())
        with quantize.quantize_scope({"LowBitWeightsConfig": config_cls, "MaskedLastValueQuantizer": quantizer_cls}):
            qat = quantize.quantize_apply(annotated)
        for layer in qat.layers:  # the masks of pruned layers, into their quantizers
            inner = getattr(layer, "layer", None)
            if inner is not None and inner.name in masks:
                for _weight, _quantizer, variables in getattr(layer, "_weight_vars", []):
                    if "mask" in variables:
                        variables["mask"].assign(masks[inner.name].astype(np.float32))
        ctx.fit(qat, ds, step, from_logits=not outputs_probabilities(base))
        return float_copy(qat, base)

    @staticmethod
    def _stats(model, step: QuantizeStep, names: list[str], variant: str) -> dict:
        from compression.engine.quantnoise import rows_of
        from compression.engine.selection import chosen_kernels

        target = levels(step.weight_bits)
        per_layer = {}
        for name, k in chosen_kernels(model, set(names)).items():
            if step.granularity == Granularity.PER_CHANNEL:
                achieved = max(np.unique(col).size for col in rows_of(k).T)
            else:
                achieved = int(np.unique(k).size)
            per_layer[name] = {"target": target, "achieved": int(achieved)}
        unit = "per output channel" if step.granularity == Granularity.PER_CHANNEL else "per layer"
        return {"levels": {"target": target, "achieved": max((v["achieved"] for v in per_layer.values()), default=None),
                           "over": f"distinct kernel values {unit}", "per_layer": per_layer},
                "variant": {"target": variant, "achieved": variant}}


_CONFIG = None


def _low_bit_config():
    """tfmot's QuantizeConfig for weights at 4 or 2 bits, and its masked LastValueQuantizer (built on first use)."""
    global _CONFIG
    if _CONFIG is not None:
        return _CONFIG
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class MaskedLastValueQuantizer(quantizers.LastValueQuantizer):
        """LastValueQuantizer after a fixed 0/1 mask: pruned weights stay zero and get no gradient."""

        def build(self, tensor_shape, name, layer):
            weights = super().build(tensor_shape, name, layer)
            weights["mask"] = layer.add_weight(f"{name}_mask", shape=tensor_shape, trainable=False, initializer="ones")
            return weights

        def __call__(self, inputs, training, weights, **kwargs):
            return super().__call__(inputs * weights["mask"], training, weights, **kwargs)

    class LowBitWeightsConfig(tfmot.quantization.keras.QuantizeConfig):
        """Kernel at ``bits`` (symmetric, narrow range: 2 * (2^(bits-1) - 1) + 1 levels); activations untouched."""

        def __init__(self, bits: int, per_channel: bool):
            self.bits, self.per_channel = int(bits), bool(per_channel)

        def get_weights_and_quantizers(self, layer):
            return [(layer.kernel, MaskedLastValueQuantizer(num_bits=self.bits, per_axis=self.per_channel,
                                                            symmetric=True, narrow_range=True))]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            layer.kernel = quantize_weights[0]

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {"bits": self.bits, "per_channel": self.per_channel}

    _CONFIG = (LowBitWeightsConfig, MaskedLastValueQuantizer)
    return _CONFIG


EXECUTOR = QuantizeExecutor()
