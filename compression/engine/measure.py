"""Measuring a stage and the exported file: everything on the artifact itself.

A stage is measured on its Keras model and its TFLite conversion (float32; a QAT stage:
the int8 file it exports to, since that is where its quantized kernels exist). The
exported file is measured on its own tensors and by running it. Every kernel layer of the
baseline must be found in every measurement: a layer the file reader cannot match fails
the run with its name, instead of silently dropping out of the figures.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compression.choices import ExportMode
from compression.engine import export, metrics, models
from compression.errors import UserError


class MeasurementError(UserError):
    """A figure could not be measured on the artifact (e.g. a layer missing from the file)."""


@dataclass
class Measured:
    metrics: dict
    weights: list  # metrics.LayerWeights
    predictions: np.ndarray
    tflite: bytes


def check_coverage(weights: list, kernel_names: list[str], what: str) -> None:
    found = {lw.name for lw in weights}
    missing = [n for n in kernel_names if n not in found]
    if missing:
        raise MeasurementError(
            f"could not find the weights of layer {', '.join(missing)} in {what}; the figures would leave "
            f"{'it' if len(missing) == 1 else 'them'} out, so the run stops here (please report this model)")


def keras_file_bytes(model) -> bytes:
    """The bytes of model.keras as the run folder stores it (no optimizer state)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        models.save(model, path)
        return path.read_bytes()


def measure_keras(model, ds, mode: ExportMode, runs: int, kernel_names: list[str], qat: bool) -> Measured:
    """Metrics of a stage: weights and accuracy from the Keras model, sizes and latency from its
    TFLite file (float32; a QAT stage: the int8 file it exports to)."""
    tfl = export.to_tflite(model, mode if qat else ExportMode.FLOAT32, ds.x_train)
    if qat:
        weights = metrics.tflite_weights(tfl, kernel_names)
        check_coverage(weights, kernel_names, "the QAT stage's TFLite file")
    else:
        weights = metrics.keras_weights(model)
        check_coverage(weights, kernel_names, "the stage's Keras model")
    preds = models.predict_classes(model, ds.x_test)
    rows, summary = metrics.layer_stats(weights)
    keras_bytes = keras_file_bytes(model)
    out = {
        "accuracy": metrics.accuracy(ds.y_test, preds),
        **summary,
        "layers": rows,
        "keras_bytes": len(keras_bytes),
        "keras_zip_bytes": metrics.zipped_size(keras_bytes, "model.keras"),
        "tflite_bytes": len(tfl),
        "tflite_zip_bytes": metrics.zipped_size(tfl),
        "latency_ms": metrics.latency_ms(tfl, ds.x_test[0], runs=runs),
        "per_class_recall": metrics.per_class_recall(ds.y_test, preds, ds.num_classes),
        "tflite_mode": (mode if qat else ExportMode.FLOAT32).value,
    }
    return Measured(out, weights, preds, tfl)


def measure_file(tfl: bytes, ds, runs: int, kernel_names: list[str], mode: ExportMode) -> Measured:
    """Metrics of an exported TFLite file, everything read from or run on the file itself."""
    weights = metrics.tflite_weights(tfl, kernel_names)
    check_coverage(weights, kernel_names, "the exported TFLite file")
    preds = metrics.tflite_predict(tfl, ds.x_test)
    rows, summary = metrics.layer_stats(weights)
    out = {
        "export": ExportMode(mode).value,
        "accuracy": metrics.accuracy(ds.y_test, preds),
        **summary,
        "layers": rows,
        "tflite_bytes": len(tfl),
        "tflite_zip_bytes": metrics.zipped_size(tfl),
        "latency_ms": metrics.latency_ms(tfl, ds.x_test[0], runs=runs),
        "per_class_recall": metrics.per_class_recall(ds.y_test, preds, ds.num_classes),
    }
    return Measured(out, weights, preds, tfl)


def clusters_seen(row: dict) -> int:
    """Distinct values of a layer as clustering sees them: per channel where the file quantizes
    per channel (each channel has its own scale), else per layer."""
    per_channel = row.get("unique_values_per_channel")
    return per_channel if per_channel is not None else row["unique_values"]


def _max_clusters(m: dict) -> int:
    return max((clusters_seen(row) for row in m["layers"]), default=0)


def undone_sentences(stages: list[dict], baseline: dict, final: dict) -> list[str]:
    """What later stages (or the export) measurably took back from earlier ones."""
    out = []
    chain = [("baseline", baseline)] + [(s["method"], s["metrics"]) for s in stages]
    for i in range(1, len(chain)):
        (prev_name, prev), (name, now) = chain[i - 1], chain[i]
        if prev["sparsity"] - now["sparsity"] > 0.01:
            out.append(f"{name} undid sparsity: {prev['sparsity']:.1%} after {prev_name}, {now['sparsity']:.1%} after {name}")
        if prev_name == "cluster" and _max_clusters(now) > _max_clusters(prev):
            out.append(f"{name} undid clustering: at most {_max_clusters(prev)} distinct values per layer after cluster, "
                       f"{_max_clusters(now)} after {name}")
        if prev_name == "quantize" and name != "quantize":
            out.append(f"{name} after quantize dropped the ranges QAT learned; the file is quantized after training instead")
    last_name, last = chain[-1]
    if last["sparsity"] - final["sparsity"] > 0.01:
        out.append(f"the export undid sparsity: {last['sparsity']:.1%} after {last_name}, {final['sparsity']:.1%} in the file")
    return out


def stage_facts(measured: Measured, method: str, variant: str):
    """Masks and centroids a stage left, from its measured weights (for later methods)."""
    from compression.engine.methods.base import StageFacts

    masks, centroids = {}, {}
    for lw in measured.weights:
        k = lw.values()
        masks[lw.name] = k != 0
        values = np.unique(k)
        if values.size <= 256:
            centroids[lw.name] = values
    return StageFacts(method, variant, masks, centroids)


__all__ = ["MeasurementError", "Measured", "check_coverage", "clusters_seen", "keras_file_bytes", "measure_file",
           "measure_keras", "stage_facts", "undone_sentences"]
