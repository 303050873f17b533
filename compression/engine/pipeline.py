"""Running a recipe: baseline, each step in order, export, and measurement of everything.

``run_recipe`` is what the command line and the background worker call. It writes the
run folder (see docs/ARCHITECTURE.md): artifacts are built in a hidden folder and moved
in at the end, report.json last, so a failed or cancelled run leaves nothing that looks
like a result.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

from pathlib import Path
from typing import Callable

import numpy as np

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from compression.engine import download  # noqa: F401  (registers keras' download with the data loaders)
from compression.engine import exporters as writers
from compression.engine import methods as executors
from compression.engine import metrics, models
from compression.engine.exporters import ExportContext
from compression.engine.fastcluster import fast_clustering
from compression.engine.measure import Measured, float_kernels, kernel_names, measure_keras, stage_facts
from compression.engine.methods.base import MethodContext, StepResult
from compression.errors import Cancelled, ModelLoadError, RecipeError, UserError
from compression.inputs import data
from compression.recipe import exporters, methods
from compression.recipe.artifacts import RUN_FILES
from compression.recipe.figures import undone_sentences
from compression.recipe.ordering import PlannedStep, plan
from compression.recipe.recipe import Recipe
from compression.recipe.training import steps_per_epoch
from compression.store.workspace import atomic_write_json

log = logging.getLogger("compression")
Progress = Callable[[dict], None]
MAX_GALLERY = 64


def write_json_atomic(path: Path, payload) -> None:
    atomic_write_json(path, payload)


# --- progress -------------------------------------------------------------------------------


class Tracker:
    """Turns per-batch reports of each phase into overall progress events."""

    MEASURE_SHARE = 0.04  # each measurement counts as this share of the training work

    def __init__(self, recipe: Recipe, n_train: int, progress: Progress | None):
        self.progress = progress
        self.stage_count = len(recipe.steps) + 1
        units = []
        if recipe.baseline.path is None:
            units.append(recipe.baseline.epochs * steps_per_epoch(n_train, recipe.baseline.batch_size))
        for s in recipe.steps:
            units.append(s.epochs * steps_per_epoch(n_train, s.batch_size))
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


# --- the run ------------------------------------------------------------------------------------


INIT_WEIGHTS = RUN_FILES["baseline_init"]  # the trained baseline's weights before training (lottery tickets)


def _baseline(recipe: Recipe, ds: data.Dataset, tracker: Tracker):
    """The baseline model, the dataset laid out for it, where it came from, its initial
    (untrained) weights where they are known, and a sentence saying how the dataset's samples
    were adapted to the model's input (models.adapt_input)."""
    b = recipe.baseline
    if b.path is not None:
        model = models.load_model(b.path)
        ds, adaptation = models.adapt_input(model, ds, Path(b.path).name)
        return model, ds, "loaded", _initial_weights_beside(Path(b.path), model), adaptation
    ds_b = ds.with_channel_axis() if models.needs_channel_axis(b.arch) else ds
    model = models.build(b.arch, ds_b.input_shape, ds_b.num_classes, b.seed)
    initial = [w.copy() for w in model.get_weights()]
    models.fit(model, ds_b, **b.training(), report=tracker.batch_report(), seed=b.seed)
    adaptation = {"kind": "none", "from": list(ds.input_shape), "to": list(ds_b.input_shape),
                  "sentence": "none: the model was built for the dataset's samples"
                              + (" (a channel axis added)" if ds_b.input_shape != ds.input_shape else "")}
    if ds_b.input_shape != ds.input_shape:
        adaptation["kind"] = "reshape"
    return model, ds_b, "trained", initial, adaptation


def _initial_weights_beside(path: Path, model) -> list | None:
    """A baseline.keras written by an earlier run keeps its initial weights next to it."""
    f = path.with_name(INIT_WEIGHTS)
    if not f.is_file():
        return None
    try:
        with np.load(f, allow_pickle=False) as z:
            arrays = [z[f"w{i}"] for i in range(len(z.files))]
    except (OSError, ValueError, KeyError):
        return None
    shapes = [tuple(w.shape) for w in model.get_weights()]
    return arrays if [a.shape for a in arrays] == shapes else None


def _gallery(ds: data.Dataset, y_base: np.ndarray, y_final: np.ndarray) -> np.ndarray:
    changed = np.flatnonzero(y_base != y_final)
    # Forgotten first (baseline right, compressed wrong), then the rest.
    forgotten = changed[y_base[changed] == ds.y_test[changed]]
    others = changed[y_base[changed] != ds.y_test[changed]]
    return np.concatenate([forgotten, others])[:MAX_GALLERY].astype(np.int64)


def run_recipe(recipe: Recipe, out_dir: str | Path, progress: Progress | None = None) -> dict:
    """Run ``recipe``, write the run folder, return the report. See docs/ARCHITECTURE.md."""
    t_start = time.perf_counter()
    planned = plan(recipe)  # raises RecipeError for an unknown method or a refused order
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [RUN_FILES["report"], *exporters.file_names().values()]:
        if (out_dir / stale).exists():
            (out_dir / stale).unlink()
    write_json_atomic(out_dir / RUN_FILES["recipe"], recipe.to_dict())
    work = out_dir / f".partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        report = _run(recipe, planned, work, progress, t_start)
        for name in report["artifacts"].values():
            if (work / name).exists():
                os.replace(work / name, out_dir / name)
        report["timing"]["total_s"] = round(time.perf_counter() - t_start, 3)
        write_json_atomic(out_dir / RUN_FILES["report"], report)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _apply(step, p: PlannedStep, model, ds, ctx: MethodContext) -> StepResult:
    methods.get(step.method, f"{ctx.where}.method")
    try:
        with fast_clustering():  # tfmot's clustering (cluster, CQAT, PCQAT) without its n x k argmin: same result
            result = executors.get(step.method).apply(model, ds, step, ctx)
    except (UserError, Cancelled):
        raise
    except ValueError as e:  # tfmot refuses a layer or parameter: say which step
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise RecipeError(ctx.where, f"{step.method} could not run: {first}") from None
    if not isinstance(result, StepResult):
        raise TypeError(f"method {step.method!r} returned {type(result).__name__}, not a StepResult")
    return result


def studio_input_scale(recipe: Recipe, ds: data.Dataset, source: str) -> float | None:
    """The raw-value scale to fold into the exported file, for the studio's own baselines (trained in
    this run, or a baseline.keras written by a studio baseline run); None for a user's model, which
    keeps its own input contract."""
    scale = data.RAW_SCALE.get(ds.name)
    if not scale:
        return None
    if source == "trained":
        return scale
    sibling = Path(recipe.baseline.path).with_name("recipe.json")
    try:
        made = json.loads(sibling.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    baseline = made.get("baseline") if isinstance(made, dict) else None
    return scale if isinstance(baseline, dict) and baseline.get("arch") else None


def input_contract(ds: data.Dataset, source: str, raw_scale: float | None, adaptation: dict | None = None) -> dict:
    """What the exported file expects and gives, for the Results page and MODEL.md."""
    if raw_scale:
        scaling = (f"raw {ds.name} pixel values (0 to {raw_scale:g}), as an image file gives them: the file "
                   f"divides by {raw_scale:g} itself (a Rescaling layer in front of the model)")
        value_range = [0.0, float(raw_scale)]
    elif source == "trained":
        scaling = "the values of the dataset as given (no scaling by the studio)"
        value_range = [float(np.min(ds.x_test)), float(np.max(ds.x_test))] if len(ds.x_test) else None
    else:
        scaling = ("the model's own input contract: the studio fed it the dataset as its loader gives it "
                   f"(values {float(np.min(ds.x_test)):g} to {float(np.max(ds.x_test)):g})" if len(ds.x_test) else
                   "the model's own input contract")
        value_range = [float(np.min(ds.x_test)), float(np.max(ds.x_test))] if len(ds.x_test) else None
    return {"shape": [1, *ds.input_shape], "dtype": "float32", "value_range": value_range, "scaling": scaling,
            "raw_scale": raw_scale,  # set: the file takes raw values (the loaders' [0, 1] times this)
            "output": f"{ds.num_classes} class scores per sample; the predicted class is the largest",
            "class_names": list(ds.class_names),
            "adaptation": (adaptation or {}).get("sentence", "none"),
            "adapt": adaptation}  # the spec compression.inputs.data.adapt_samples applies


def _run(recipe: Recipe, planned: list[PlannedStep], work: Path, progress: Progress | None, t_start: float) -> dict:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    ds = data.load(recipe.dataset).limited(recipe.max_train_samples)
    tracker = Tracker(recipe, len(ds.x_train), progress)
    runs = recipe.latency_runs
    seed = recipe.baseline.seed

    # Baseline
    t0 = time.perf_counter()
    tracker.begin("baseline", 0)
    tf_keras.utils.set_random_seed(seed)
    baseline, ds, source, initial, adaptation = _baseline(recipe, ds, tracker)
    if not kernel_names(baseline):
        raise ModelLoadError("the baseline has no layer with weights (Dense or Conv2D) to compress")
    if initial is not None:
        np.savez(work / INIT_WEIGHTS, **{f"w{i}": w for i, w in enumerate(initial)})
    base_m = measure_keras(baseline, ds, recipe.export, runs, qat=False, timed=False)
    timed = [(base_m, ds.x_test[0])]  # every file's latency is timed at the end, in one quiet moment
    (work / RUN_FILES["baseline"]).write_bytes(base_m.keras)  # the very file whose size was measured
    tracker.measured("baseline")
    log.info("baseline (%s): accuracy %.4f, %d parameters", source, base_m.metrics["accuracy"],
             base_m.metrics["params_total"])
    hist = [{"stage": "baseline", "layers": metrics.histograms(base_m.weights)}]
    report = {
        "recipe": recipe.to_dict(),
        "dataset": ds.info(),
        "input": input_contract(ds, source, raw_scale := studio_input_scale(recipe, ds, source), adaptation),
        "baseline": {"metrics": base_m.metrics, "architecture": models.architecture_table(baseline),
                     "wall_s": round(time.perf_counter() - t0, 3), "source": source},
        "stages": [],
        "versions": {"tensorflow": tf.__version__, "tfmot": tfmot.__version__, "recipe": recipe.version},
    }

    # the float kernels of the latest float model: a QAT stage's and a quantized file's zeros are told
    # apart against them (pruned against rounded), and a QAT stage hands them on as its facts
    current, last, earlier, qat, reference = baseline, base_m, [], False, float_kernels(baseline)
    for i, (step, p) in enumerate(zip(recipe.steps, planned), 1):
        t0 = time.perf_counter()
        method = methods.get(step.method)
        tracker.begin(step.method, i)
        tf_keras.utils.set_random_seed((seed + i) % 2**32)
        if qat and not method.produces_qat:  # only in an explicitly unsafe order
            current = models.float_copy(current, baseline)
        ctx = MethodContext(baseline=baseline, initial_weights=initial, earlier=list(earlier), variant=p.variant,
                            where=f"steps[{i - 1}]", report=tracker.batch_report(), seed=(seed + i) % 2**32)
        result = _apply(step, p, current, ds, ctx)
        current, qat = result.model, method.produces_qat
        if not qat:
            reference = float_kernels(current)
        last = measure_keras(current, ds, recipe.export, runs, qat=qat, reference=reference, timed=False)
        timed.append((last, ds.x_test[0]))
        tracker.measured(step.method)
        earlier.append(stage_facts(reference, step.method, p.variant, result.facts))
        report["stages"].append({
            "method": step.method,
            "variant": p.variant,
            "description": p.description,
            "wall_s": round(time.perf_counter() - t0, 3),
            "metrics": last.metrics,
            "stats": result.stats,
            "notes": list(result.notes) + list(ctx.notes),
            "warnings": list(p.warnings) + list(result.notes),
        })
        hist.append({"stage": step.method, "layers": metrics.histograms(last.weights)})
        log.info("%s (%s): accuracy %.4f, sparsity %.3f", step.method, p.variant, last.metrics["accuracy"],
                 last.metrics["sparsity"])

    # Export every artifact that applies and measure the files themselves
    t0 = time.perf_counter()
    tracker.begin("export", len(recipe.steps) + 1)
    same_file = last.metrics.get("tflite_mode") == recipe.export.value and not raw_scale
    primary = exporters.primary()
    ectx = ExportContext(model=current, ds=ds.times(raw_scale) if raw_scale else ds, mode=recipe.export,
                         kernel_names=kernel_names(current), latency_runs=runs, reference=reference,
                         reuse={primary.key: last.tflite} if same_file else {},
                         input_scale=1.0 / raw_scale if raw_scale else None, recipe=recipe)
    final_metrics: dict = {}
    final: Measured | None = None
    artifacts = {k: v for k, v in RUN_FILES.items() if k != "baseline_init" or initial is not None}
    for exporter in exporters.for_recipe(recipe):
        writer = writers.get(exporter.key)
        written = writer.write(ectx)
        (work / exporter.file_name).write_bytes(written.blob)
        ectx.written[exporter.key] = written
        artifacts[exporter.key] = exporter.file_name
        figures = writer.measure(written, ectx)
        if exporter.primary:
            final_metrics = {**figures.metrics, **final_metrics}
            final = figures.measured
        else:
            final_metrics.update(figures.metrics)
    if final is None:
        raise RuntimeError(f"the primary exporter {primary.key!r} did not measure its file")
    timed.append((final, ectx.ds.x_test[0]))
    for measured, figures in zip([m for m, _x in timed], metrics.latencies([(m.tflite, x) for m, x in timed], runs)):
        measured.metrics.update(figures)
    final_metrics.update(final.metrics)
    final_metrics["wall_s"] = round(time.perf_counter() - t0, 3)
    tracker.measured("the exported file")
    hist.append({"stage": "final", "layers": metrics.histograms(final.weights)})
    (work / RUN_FILES["keras"]).write_bytes(last.keras)  # the very file whose size the last stage reports
    report["final"] = final_metrics
    report["undone"] = undone_sentences(report["stages"], base_m.metrics, final_metrics)
    report["artifacts"] = artifacts
    report["timing"] = {"total_s": None, "export_s": final_metrics["wall_s"]}
    report["qat"] = qat
    write_json_atomic(work / RUN_FILES["weights"], {"stages": hist})
    idx = _gallery(ds, base_m.predictions, final.predictions)
    np.savez_compressed(
        work / RUN_FILES["predictions"],
        y_true=ds.y_test.astype(np.int64),
        baseline_pred=base_m.predictions.astype(np.int64),
        final_pred=final.predictions.astype(np.int64),
        changed_index=idx,
        changed_images=ds.display_images(idx) if len(idx) else np.zeros((0, 1, 1), dtype=np.uint8),
        class_names=np.asarray(ds.class_names, dtype=str),
    )
    log.info("exported %s: %d bytes (%d zipped), accuracy %.4f, sparsity %.3f", recipe.export.value,
             final_metrics["tflite_bytes"], final_metrics["tflite_zip_bytes"], final_metrics["accuracy"],
             final_metrics["sparsity"])
    tracker.done = tracker.total
    tracker.emit(phase="export", message="done")
    return report
