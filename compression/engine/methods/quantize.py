"""Quantization-aware training (tfmot.quantization.keras), in the variant that keeps earlier work."""

from __future__ import annotations

from dataclasses import dataclass

from compression.choices import ExportMode, LayerScope
from compression.engine.methods.base import LayerSelection, Method, MethodContext, StepConfig, StepResult, param
from compression.errors import RecipeError


@dataclass(frozen=True)
class QuantizeStep(StepConfig):
    method = "quantize"

    layers: LayerSelection = param(LayerSelection(), "which layers to train for int8", kind="layers")
    preserve: bool = param(True, "keep earlier sparsity and clusters (PQAT, CQAT, PCQAT); false only with "
                           "allow_unsafe_order, to show what is lost", advanced=True)
    # tfmot's QAT example: one epoch, large batches
    epochs: int = param(1, "quantization-aware fine-tuning epochs", lo=1, hi=1000, unit="epochs")
    batch_size: int = param(500, "samples per optimizer step while fine-tuning", lo=1, hi=65536, unit="samples")
    learning_rate: float = param(1e-4, "Adam's learning rate while fine-tuning", lo=0, hi=1, lo_open=True)

    @property
    def target_text(self) -> str:
        return "int8"


class Quantize(Method):
    name = "quantize"
    rank = 30
    title = "Quantize (QAT)"
    help = ("Quantization-aware training simulates int8 weights and activations while fine-tuning, so the "
            "model learns to live with the rounding; the exported file then stores int8 with the ranges it "
            "learned. After pruning or clustering it runs a preserving variant that keeps their work.")
    step_type = QuantizeStep
    produces_qat = True
    preserves = {
        "prune": "quantization-aware training without prune preservation lets pruned weights grow back, "
                 "so the sparsity is lost",
        "cluster": "quantization-aware training without cluster preservation trains every weight freely, "
                   "so the clusters are lost",
    }
    variants = {
        "qat": "Quantization-aware training for int8",
        "pqat": "QAT will run as PQAT (prune-preserving): keeps the sparsity",
        "cqat": "QAT will run as CQAT (cluster-preserving): keeps the clusters",
        "pcqat": "QAT will run as PCQAT: keeps the sparsity and the clusters",
    }

    def variant(self, step: QuantizeStep, intact: frozenset[str]) -> str:
        if "prune" in intact and "cluster" in intact:
            return "pcqat"
        if "prune" in intact:
            return "pqat"
        if "cluster" in intact:
            return "cqat"
        return "qat"

    def describe(self, step, variant: str, kept: list[str]) -> str:
        text = self.variants[variant]
        return f"{text.split(':')[0]}: keeps {' and '.join(kept)}" if kept and variant != "qat" else text

    def check_recipe(self, step, recipe, where: str) -> None:
        if recipe.export in (ExportMode.FLOAT32, ExportMode.FLOAT16):
            raise RecipeError("export", f"{recipe.export.value} would throw away the quantize step's int8 training; "
                                        "choose int8_dynamic or int8_full, or remove the quantize step")

    def apply(self, model, ds, step: QuantizeStep, ctx: MethodContext) -> StepResult:
        import tensorflow_model_optimization as tfmot
        import tf_keras

        from compression.engine.models import clone, fit, outputs_probabilities
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
        fit(qat, ds, **step.training(), report=ctx.report, from_logits=not outputs_probabilities(base))
        return StepResult(qat, [], {"variant": {"target": ctx.variant, "achieved": ctx.variant}})


def is_qat(model) -> bool:
    return any(layer.__class__.__name__.startswith("Quantize") for layer in model.layers)


def float_copy(qat_model, like):
    """The float weights of a QAT model in a plain copy of ``like`` (same architecture).

    Only for recipes that explicitly run a method after QAT: the learned quantization
    ranges are dropped, which the report says.
    """
    from compression.engine.models import clone

    out = clone(like)
    by_name = {}
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        by_name[inner.name] = inner
    for layer in out.layers:
        src = by_name.get(layer.name)
        if src is None or not layer.weights:
            continue
        values = {w.name.split("/")[-1]: w for w in src.weights}
        layer.set_weights([values[w.name.split("/")[-1]].numpy() if w.name.split("/")[-1] in values else w.numpy()
                           for w in layer.weights])
    return out


METHOD = Quantize()
