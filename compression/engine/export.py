"""TFLite conversion in the four export modes."""

from __future__ import annotations

import compression  # noqa: F401
import numpy as np
import tensorflow as tf

from compression.recipe.choices import ExportMode

REPRESENTATIVE_SAMPLES = 200


def positive_zeros(model) -> None:
    """Turn every -0.0 weight into +0.0 (numerically the same, in place).

    Sparsity-preserving clustering can leave pruned weights as -0.0 (a zero centroid times a
    negative sign); the file then stores 0x80.. bytes that the Deep Compression container and
    zip cannot treat as the zeros they are, and the layer counts as dense.
    """
    for layer in model.layers:
        weights = layer.get_weights()
        if any(w.dtype.kind == "f" and np.signbit(w[w == 0]).any() for w in weights):
            layer.set_weights([np.where(w == 0, np.zeros_like(w), w) if w.dtype.kind == "f" else w
                               for w in weights])


def to_tflite(model, mode: ExportMode | str, x_representative: np.ndarray | None = None) -> bytes:
    """The model as a .tflite flatbuffer.

    float32: as is. float16: float16 weights. int8_dynamic: int8 weights, float activations
    (for a QAT model: int8 weights and activations from the ranges QAT learned, float I/O).
    int8_full: int8 weights, activations, input and output, calibrated on training samples.
    """
    mode = ExportMode(mode)
    positive_zeros(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == ExportMode.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == ExportMode.INT8_DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == ExportMode.INT8_FULL:
        if x_representative is None or len(x_representative) == 0:
            raise ValueError("int8_full export needs representative samples")
        samples = np.asarray(x_representative[:REPRESENTATIVE_SAMPLES], dtype=np.float32)

        def representative():
            for sample in samples:
                yield [sample[None, ...]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()
