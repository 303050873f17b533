"""Quantization-aware training, executed: tfmot.quantization.keras in the variant that keeps earlier
work (PQAT, CQAT, PCQAT). The declaration is compression/recipe/methods/quantize.py.
"""

from __future__ import annotations

from compression.engine.methods.base import Executor, MethodContext, StepResult
from compression.recipe.choices import LayerScope
from compression.recipe.methods.quantize import QuantizeStep


class QuantizeExecutor(Executor):
    name = "quantize"

    def apply(self, model, ds, step: QuantizeStep, ctx: MethodContext) -> StepResult:
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


EXECUTOR = QuantizeExecutor()
