"""Quantization-aware training with tfmot, in the variant that keeps earlier steps' work."""

from __future__ import annotations

import compression  # noqa: F401
import tensorflow_model_optimization as tfmot
import tf_keras

from compression.choices import LayerScope, Variant
from compression.data import Dataset
from compression.engine.models import BatchReport, clone, fit, outputs_probabilities
from compression.recipe import QuantizeStep
from compression.engine.selection import select

quantize = tfmot.quantization.keras
combine = tfmot.experimental.combine


def scheme(variant: Variant):
    """tfmot's quantize scheme for each variant (None: the default 8-bit scheme)."""
    if variant == Variant.PQAT:
        return combine.Default8BitPrunePreserveQuantizeScheme()
    if variant == Variant.CQAT:
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False)
    if variant == Variant.PCQAT:
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)
    return None


def apply(model: tf_keras.Model, ds: Dataset, step: QuantizeStep, variant: Variant, *,
          report: BatchReport | None = None, where: str = "quantize") -> tf_keras.Model:
    """A quantization-aware copy of ``model``, trained; convert it to TFLite for the int8 file."""
    base = clone(model)
    if step.layers.scope == LayerScope.ALL:
        annotated = quantize.quantize_annotate_model(base)
    else:
        names = select(base, step.layers, f"{where}.layers")
        annotated = tf_keras.models.clone_model(
            base, clone_function=lambda layer: quantize.quantize_annotate_layer(layer) if layer.name in names else layer
        )
    chosen = scheme(variant)
    with quantize.quantize_scope():
        qat = quantize.quantize_apply(annotated, chosen) if chosen is not None else quantize.quantize_apply(annotated)
    fit(qat, ds, epochs=step.epochs, batch_size=step.batch_size, learning_rate=step.learning_rate, report=report,
        from_logits=not outputs_probabilities(base))
    return qat


def is_qat(model: tf_keras.Model) -> bool:
    return any(layer.__class__.__name__.startswith("Quantize") for layer in model.layers)


def float_copy(qat_model: tf_keras.Model, like: tf_keras.Model) -> tf_keras.Model:
    """The float weights of a QAT model in a plain copy of ``like`` (same architecture).

    Only for recipes that explicitly run a method after QAT: the learned quantization
    ranges are dropped, which the report says.
    """
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
        new = []
        for w in layer.weights:
            key = w.name.split("/")[-1]
            new.append(values[key].numpy() if key in values else w.numpy())
        layer.set_weights(new)
    return out
