"""Measuring a stage and the exported file: everything on the artifact itself.

A stage is measured on its Keras model and its TFLite conversion (float32; a QAT stage: the
int8 file it exports to, since that is where its quantized kernels exist). The exported file
is measured on its own tensors and by running it. Every kernel layer of the model that made a
file must be found in the file: a layer the reader cannot match fails the run with its name,
instead of silently dropping out of the figures. A quantized file's zeros are told apart:
weights that were zero before quantization (pruned) and weights the quantizer rounded to zero.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compression.engine import export, metrics, models
from compression.errors import UserError
from compression.recipe.choices import ExportMode


class MeasurementError(UserError):
    """A figure could not be measured on the artifact (e.g. a layer missing from the file)."""


@dataclass
class Measured:
    metrics: dict
    weights: list  # metrics.LayerWeights
    predictions: np.ndarray
    tflite: bytes
    keras: bytes = b""  # the stage's .keras file, measured and then stored as it is


def kernel_names(model) -> list[str]:
    """The model's layers with weights, in model order (nested models included)."""
    return [layer.name for layer in metrics.weight_layers(model)]


def check_coverage(weights: list, kernel_names: list[str], what: str) -> None:
    found = {lw.name for lw in weights}
    missing = [n for n in kernel_names if n not in found]
    if missing:
        raise MeasurementError(
            f"could not find the weights of layer {', '.join(missing)} in {what}; the figures would leave "
            f"{'it' if len(missing) == 1 else 'them'} out, so the run stops here (please report this model)")


def file_weights(tfl: bytes, names: list[str], what: str) -> list:
    """The kernels of ``names`` in a TFLite file; MeasurementError if one is missing or matched twice."""
    found = metrics.read_weights(tfl, names)
    if found.ambiguous:
        layer, tensors = next(iter(found.ambiguous.items()))
        raise MeasurementError(f"layer {layer} matches {len(tensors)} kernels in {what} ({', '.join(tensors[:3])}); "
                               "the figures would be ambiguous, so the run stops here (please report this model)")
    check_coverage(found.layers, names, what)
    return found.layers


def keras_file_bytes(model) -> bytes:
    """The bytes of model.keras as the run folder stores it (no optimizer state)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        models.save(model, path)
        return path.read_bytes()


def float_kernels(model) -> dict[str, np.ndarray]:
    """A float model's kernels by layer: what a later quantized file is compared with to tell pruned
    zeros from rounded ones."""
    return {lw.name: lw.kernel for lw in metrics.keras_weights(model)}


def measure_keras(model, ds, mode: ExportMode, runs: int, qat: bool, reference: dict | None = None,
                  timed: bool = True) -> Measured:
    """Metrics of a stage: weights and accuracy from the Keras model, sizes and latency from its
    TFLite file (float32; a QAT stage: the int8 file it exports to, whose zeros are told apart with
    ``reference``, the float kernels of the stage before QAT)."""
    names = kernel_names(model)
    tfl = export.to_tflite(model, mode if qat else ExportMode.FLOAT32, ds.x_train)
    if qat:
        weights = file_weights(tfl, names, "the QAT stage's TFLite file")
        rows, summary = metrics.layer_stats(weights, reference)
    else:
        weights = metrics.keras_weights(model)
        rows, summary = metrics.layer_stats(weights)
    preds = models.predict_classes(model, ds.x_test)
    keras_bytes = keras_file_bytes(model)
    out = {
        "accuracy": metrics.accuracy(ds.y_test, preds),
        **summary,
        "layers": rows,
        "keras_bytes": len(keras_bytes),
        "keras_zip_bytes": metrics.zipped_size(keras_bytes, "model.keras"),
        "tflite_bytes": len(tfl),
        "tflite_zip_bytes": metrics.zipped_size(tfl),
        **(metrics.latency(tfl, ds.x_test[0], runs=runs) if timed else {}),
        "per_class_recall": metrics.per_class_recall(ds.y_test, preds, ds.num_classes),
        "tflite_mode": (mode if qat else ExportMode.FLOAT32).value,
    }
    return Measured(out, weights, preds, tfl, keras_bytes)


def measure_file(tfl: bytes, ds, runs: int, names: list[str], mode: ExportMode,
                 reference: dict | None = None, timed: bool = True) -> Measured:
    """Metrics of an exported TFLite file, everything read from or run on the file itself. With the
    float kernels it was made from (``reference``), its zeros are told apart (pruned against rounded)."""
    weights = file_weights(tfl, names, "the exported TFLite file")
    preds = metrics.tflite_predict(tfl, ds.x_test)
    rows, summary = metrics.layer_stats(weights, reference)
    out = {
        "export": ExportMode(mode).value,
        "accuracy": metrics.accuracy(ds.y_test, preds),
        **summary,
        "layers": rows,
        "tflite_bytes": len(tfl),
        "tflite_zip_bytes": metrics.zipped_size(tfl),
        **(metrics.latency(tfl, ds.x_test[0], runs=runs) if timed else {}),
        "per_class_recall": metrics.per_class_recall(ds.y_test, preds, ds.num_classes),
    }
    return Measured(out, weights, preds, tfl)


def stage_facts(kernels: dict[str, np.ndarray], method: str, variant: str, extra: dict | None = None):
    """Masks and centroids a stage left, from float kernels (a quantized file's rounding zeros never
    count as pruned; a QAT stage hands on the float kernels it started from), and whatever the
    method handed on."""
    from compression.engine.methods.base import StageFacts

    masks, centroids = {}, {}
    for name, kernel in kernels.items():
        masks[name] = kernel != 0
        values = np.unique(kernel)
        if values.size <= 256:
            centroids[name] = values
    return StageFacts(method, variant, masks, centroids, list(kernels), dict(extra or {}))


__all__ = ["MeasurementError", "Measured", "check_coverage", "file_weights", "float_kernels", "kernel_names",
           "keras_file_bytes",
           "measure_file", "measure_keras", "stage_facts"]
