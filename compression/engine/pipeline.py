"""Running a recipe: baseline, each step in order, export, and measurement of everything.

``run_recipe`` is what the command line and the background worker call. It writes the
run folder (see docs/ARCHITECTURE.md): artifacts are built in a hidden folder and moved
in at the end, report.json last, so a failed or cancelled run leaves nothing that looks
like a result.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from compression import data
from compression.engine import export, metrics, models
from compression.engine.methods import cluster as clustering, prune as pruning, quantize as quantization
from compression.choices import ExportMode, Method
from compression.errors import Cancelled, ModelLoadError, RecipeError, UserError
from compression.ordering import PlannedStep, plan
from compression.recipe import Recipe

log = logging.getLogger("compression")
Progress = Callable[[dict], None]
MAX_GALLERY = 64


def write_json_atomic(path: Path, payload) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(tmp, path)


# --- progress -------------------------------------------------------------------------------


class Tracker:
    """Turns per-batch reports of each phase into overall progress events."""

    MEASURE_SHARE = 0.04  # each measurement counts as this share of the training work

    def __init__(self, recipe: Recipe, n_train: int, progress: Progress | None):
        self.progress = progress
        self.stage_count = len(recipe.steps) + 1
        units = []
        if recipe.baseline.path is None:
            units.append(recipe.baseline.epochs * math.ceil(n_train / recipe.baseline.batch_size))
        for s in recipe.steps:
            units.append(s.epochs * math.ceil(n_train / s.batch_size))
        train_total = max(1, sum(units))
        self.measure_units = max(1.0, train_total * self.MEASURE_SHARE)
        self.total = train_total + self.measure_units * (self.stage_count + 1)
        self.done = 0.0
        self.stage, self.stage_index = "baseline", 0

    def emit(self, **event) -> None:
        if self.progress is None:
            return
        base = {"phase": "train", "stage": self.stage, "stage_index": self.stage_index,
                "stage_count": self.stage_count, "epoch": None, "epochs": None, "batch": None,
                "batches": None, "loss": None, "accuracy": None}
        base.update(event)
        base["fraction"] = min(1.0, self.done / self.total)
        self.progress(base)

    def begin(self, stage: str, index: int) -> None:
        self.stage, self.stage_index = stage, index
        self.emit(phase="export" if stage == "export" else "train", message=f"{stage}: starting")

    def batch_report(self):
        last = {"batch": 0}

        def report(epoch, epochs, batch, batches, loss, acc):
            if batch > 0:
                self.done += 1
            last["batch"] = batch
            self.emit(phase="train", epoch=epoch, epochs=epochs, batch=batch, batches=batches,
                      loss=None if loss is None else float(loss), accuracy=None if acc is None else float(acc),
                      message=f"{self.stage}: epoch {epoch}/{epochs}, batch {batch}/{batches}")

        return report

    def measured(self, what: str) -> None:
        self.done += self.measure_units
        self.emit(phase="measure", message=f"{self.stage}: measured {what}")


# --- measuring a stage -----------------------------------------------------------------------


@dataclass
class Measured:
    metrics: dict
    weights: list  # metrics.LayerWeights
    predictions: np.ndarray
    tflite: bytes


def measure_keras(model, ds: data.Dataset, mode: ExportMode, runs: int, kernel_names: list[str],
                  qat: bool) -> Measured:
    """Metrics of a stage: weights and accuracy from the Keras model, sizes and latency from its
    TFLite file (float32; a QAT stage: the int8 file it exports to). A QAT model's weights
    are read from its int8 file, since that is where its quantized kernels exist."""
    tfl = export.to_tflite(model, mode if qat else ExportMode.FLOAT32, ds.x_train)
    weights = metrics.tflite_weights(tfl, kernel_names) if qat else metrics.keras_weights(model)
    preds = models.predict_classes(model, ds.x_test)
    rows, summary = metrics.layer_stats(weights)
    out = {
        "accuracy": metrics.accuracy(ds.y_test, preds),
        **summary,
        "layers": rows,
        "keras_zip_bytes": metrics.keras_zip_bytes(model),
        "tflite_bytes": len(tfl),
        "tflite_zip_bytes": metrics.zipped_size(tfl, "model.tflite"),
        "latency_ms": metrics.latency_ms(tfl, ds.x_test[0], runs=runs),
        "per_class_recall": metrics.per_class_recall(ds.y_test, preds, ds.num_classes),
        "tflite_mode": (mode if qat else ExportMode.FLOAT32).value,
    }
    return Measured(out, weights, preds, tfl)


def measure_file(tfl: bytes, ds: data.Dataset, runs: int, kernel_names: list[str], mode: ExportMode) -> Measured:
    """Metrics of the exported file, everything read from or run on the file itself."""
    weights = metrics.tflite_weights(tfl, kernel_names)
    preds = metrics.tflite_predict(tfl, ds.x_test)
    rows, summary = metrics.layer_stats(weights)
    out = {
        "export": mode.value,
        "accuracy": metrics.accuracy(ds.y_test, preds),
        **summary,
        "layers": rows,
        "tflite_bytes": len(tfl),
        "tflite_zip_bytes": metrics.zipped_size(tfl, "model.tflite"),
        "latency_ms": metrics.latency_ms(tfl, ds.x_test[0], runs=runs),
        "per_class_recall": metrics.per_class_recall(ds.y_test, preds, ds.num_classes),
    }
    return Measured(out, weights, preds, tfl)


def _max_unique(m: dict, names: set[str] | None = None) -> int:
    vals = [row["unique_values"] for row in m["layers"] if names is None or row["name"] in names]
    return max(vals) if vals else 0


def undone_sentences(stages: list[dict], baseline: dict, final: dict) -> list[str]:
    """What later stages (or the export) measurably took back from earlier ones."""
    out = []
    chain = [("baseline", baseline)] + [(s["method"], s["metrics"]) for s in stages]
    for i in range(1, len(chain)):
        (prev_name, prev), (name, now) = chain[i - 1], chain[i]
        if prev["sparsity"] - now["sparsity"] > 0.01:
            out.append(f"{name} undid sparsity: {prev['sparsity']:.1%} after {prev_name}, {now['sparsity']:.1%} after {name}")
        if prev_name == "cluster" and _max_unique(now) > _max_unique(prev):
            out.append(f"{name} undid clustering: at most {_max_unique(prev)} distinct values per layer after cluster, "
                       f"{_max_unique(now)} after {name}")
        if prev_name == "quantize" and name != "quantize":
            out.append(f"{name} after quantize dropped the ranges QAT learned; the file is quantized after training instead")
    last_name, last = chain[-1]
    if last["sparsity"] - final["sparsity"] > 0.01:
        out.append(f"the export undid sparsity: {last['sparsity']:.1%} after {last_name}, {final['sparsity']:.1%} in the file")
    return out


# --- the run ------------------------------------------------------------------------------------


def _baseline(recipe: Recipe, ds: data.Dataset, tracker: Tracker):
    b = recipe.baseline
    if b.path is not None:
        model = models.load_model(b.path)
        ds = models.adapt(model, ds, Path(b.path).name)
        return model, ds, "loaded"
    ds_b = ds.with_channel_axis() if models.needs_channel_axis(b.arch) else ds
    model = models.train_baseline(b.arch, ds_b, epochs=b.epochs, batch_size=b.batch_size, seed=b.seed,
                                  learning_rate=b.learning_rate, report=tracker.batch_report())
    return model, ds_b, "trained"


def _apply(step, planned: PlannedStep, model, ds, report, where):
    if step.method == Method.PRUNE:
        return pruning.apply(model, ds, step, report=report, where=where)
    if step.method == Method.CLUSTER:
        return clustering.apply(model, ds, step, planned.variant, report=report, where=where), []
    return quantization.apply(model, ds, step, planned.variant, report=report, where=where), []


def _gallery(ds: data.Dataset, y_base: np.ndarray, y_final: np.ndarray) -> np.ndarray:
    changed = np.flatnonzero(y_base != y_final)
    # Forgotten first (baseline right, compressed wrong), then the rest.
    forgotten = changed[y_base[changed] == ds.y_test[changed]]
    others = changed[y_base[changed] != ds.y_test[changed]]
    return np.concatenate([forgotten, others])[:MAX_GALLERY].astype(np.int64)


def run_recipe(recipe: Recipe, out_dir: str | Path, progress: Progress | None = None) -> dict:
    """Run ``recipe``, write the run folder, return the report. See docs/ARCHITECTURE.md."""
    t_start = time.perf_counter()
    planned = plan(recipe)  # raises RecipeError for a refused order
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", "model.tflite"):
        if (out_dir / stale).exists():
            (out_dir / stale).unlink()
    write_json_atomic(out_dir / "recipe.json", recipe.to_dict())
    work = out_dir / f".partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        report = _run(recipe, planned, work, progress, t_start)
        for name in ("baseline.keras", "model.keras", "weights.json", "predictions.npz", "model.tflite"):
            if (work / name).exists():
                os.replace(work / name, out_dir / name)
        report["timing"]["total_s"] = round(time.perf_counter() - t_start, 3)
        write_json_atomic(out_dir / "report.json", report)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(recipe: Recipe, planned: list[PlannedStep], work: Path, progress: Progress | None, t_start: float) -> dict:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    ds = data.load(recipe.dataset).limited(recipe.max_train_samples)
    tracker = Tracker(recipe, len(ds.x_train), progress)
    runs = recipe.latency_runs

    # Baseline
    t0 = time.perf_counter()
    tracker.begin("baseline", 0)
    tf_keras.utils.set_random_seed(recipe.baseline.seed)
    baseline, ds, source = _baseline(recipe, ds, tracker)
    kernel_names = [lw.name for lw in metrics.keras_weights(baseline)]
    if not kernel_names:
        raise ModelLoadError("the baseline has no layer with weights (Dense or Conv2D) to compress")
    models.save(baseline, work / "baseline.keras")
    base_m = measure_keras(baseline, ds, recipe.export, runs, kernel_names, qat=False)
    tracker.measured("baseline")
    log.info("baseline (%s): accuracy %.4f, %d parameters", source, base_m.metrics["accuracy"],
             base_m.metrics["params_total"])
    hist = [{"stage": "baseline", "layers": metrics.histograms(base_m.weights)}]
    report = {
        "recipe": recipe.to_dict(),
        "dataset": ds.info(),
        "baseline": {"metrics": base_m.metrics, "architecture": models.architecture_table(baseline),
                     "wall_s": round(time.perf_counter() - t0, 3), "source": source},
        "stages": [],
        "versions": {"tensorflow": tf.__version__, "tfmot": tfmot.__version__, "recipe": recipe.version},
    }

    current, last = baseline, base_m
    for i, (step, p) in enumerate(zip(recipe.steps, planned), 1):
        t0 = time.perf_counter()
        tracker.begin(step.method.value, i)
        tf_keras.utils.set_random_seed(recipe.baseline.seed + i)
        if quantization.is_qat(current):  # only in an explicitly unsafe order
            current = quantization.float_copy(current, baseline)
        where = f"steps[{i - 1}]"
        try:
            current, notes = _apply(step, p, current, ds, tracker.batch_report(), where)
        except (UserError, Cancelled):
            raise
        except ValueError as e:  # tfmot refuses a layer or parameter: say which step
            raise RecipeError(where, f"{step.method.value} could not run: {str(e).splitlines()[0][:300]}") from None
        is_qat = step.method == Method.QUANTIZE
        last = measure_keras(current, ds, recipe.export, runs, kernel_names, qat=is_qat)
        tracker.measured(step.method.value)
        report["stages"].append({
            "method": step.method.value,
            "variant": p.variant.value,
            "description": p.description,
            "wall_s": round(time.perf_counter() - t0, 3),
            "metrics": last.metrics,
            "warnings": list(p.warnings) + list(notes),
        })
        hist.append({"stage": step.method.value, "layers": metrics.histograms(last.weights)})
        log.info("%s (%s): accuracy %.4f, sparsity %.3f, max distinct values %d", step.method.value,
                 p.variant.value, last.metrics["accuracy"], last.metrics["sparsity"], _max_unique(last.metrics))

    # Export and measure the file itself
    t0 = time.perf_counter()
    tracker.begin("export", len(recipe.steps) + 1)
    is_qat = quantization.is_qat(current)
    reuse = last.metrics.get("tflite_mode") == recipe.export.value
    tfl = last.tflite if reuse else export.to_tflite(current, recipe.export, ds.x_train)
    (work / "model.tflite").write_bytes(tfl)
    final = measure_file(tfl, ds, runs, kernel_names, recipe.export)
    final.metrics["wall_s"] = round(time.perf_counter() - t0, 3)
    tracker.measured("the exported file")
    hist.append({"stage": "final", "layers": metrics.histograms(final.weights)})
    models.save(current, work / "model.keras")
    report["final"] = final.metrics
    report["undone"] = undone_sentences(report["stages"], base_m.metrics, final.metrics)
    report["artifacts"] = {"tflite": "model.tflite", "keras": "model.keras", "baseline": "baseline.keras",
                           "weights": "weights.json", "predictions": "predictions.npz", "recipe": "recipe.json",
                           "report": "report.json"}
    report["timing"] = {"total_s": None, "export_s": final.metrics["wall_s"]}
    report["qat"] = is_qat
    write_json_atomic(work / "weights.json", {"stages": hist})
    idx = _gallery(ds, base_m.predictions, final.predictions)
    np.savez_compressed(
        work / "predictions.npz",
        y_true=ds.y_test.astype(np.int64),
        baseline_pred=base_m.predictions.astype(np.int64),
        final_pred=final.predictions.astype(np.int64),
        changed_index=idx,
        changed_images=ds.display_images(idx) if len(idx) else np.zeros((0, 1, 1), dtype=np.uint8),
        class_names=np.asarray(ds.class_names, dtype=str),
    )
    log.info("exported %s: %d bytes (%d zipped), accuracy %.4f, sparsity %.3f", recipe.export.value,
             final.metrics["tflite_bytes"], final.metrics["tflite_zip_bytes"], final.metrics["accuracy"],
             final.metrics["sparsity"])
    tracker.done = tracker.total
    tracker.emit(phase="export", message="done")
    return report
