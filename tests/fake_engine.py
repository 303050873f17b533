"""A stand-in for compression.engine.pipeline.run_recipe, for job-machinery tests: fast, no
TensorFlow, and able to show faults the real engine cannot be made to show on demand.
Selected in worker processes with COMPRESSION_RUNNER=fake_engine:run_recipe.

The recipe's name picks the behaviour: "fail" raises; "fail-late" writes into its folder as the
real engine starts to (removes stale results, writes recipe.json and a first file) and then fails
with a one-line UserError; "deaf" ignores Cancelled for a long
time; "frozen" stops its own process (SIGSTOP) after the first batch, as a hung process
would; anything else reports ``baseline.epochs`` epochs of 20 batches, 0.05 s each, and
writes report.json.

The report and files are enough for the study kinds' aggregates (tests/test_study_jobs.py): an
accuracy that falls with the step's target, the sparsity and sizes that follow from it, a lottery
step's early-stopping iteration, predictions over a 50-sample test split, and placeholder model
files (baseline.keras, model.keras, baseline_init.npz) that later runs of a study load by path.
"""

import os
import signal
import time

from compression.errors import Cancelled
from compression.store.workspace import atomic_write_json


def run_recipe(recipe, out_dir, progress=None):
    progress = progress or (lambda e: None)
    epochs = recipe.baseline.epochs
    batches = 20
    if recipe.name == "fail":
        print("about to fail", flush=True)
        raise ValueError("simulated engine failure\nsecond line")
    if recipe.name == "fail-late":  # as the real engine starts: stale results out, recipe and a first file in
        from compression.errors import DatasetError

        for stale in ("report.json", "model.tflite", "model.dc"):
            (out_dir / stale).unlink(missing_ok=True)
        atomic_write_json(out_dir / "recipe.json", recipe.to_dict())
        (out_dir / "baseline.keras").write_bytes(b"half-written")
        raise DatasetError("simulated failure after the run had started writing")
    for epoch in range(1, epochs + 1):
        for batch in range(1, batches + 1):
            time.sleep(0.05)
            event = {"phase": "train", "stage": "baseline", "stage_index": 0, "stage_count": 1,
                     "epoch": epoch, "epochs": epochs, "batch": batch, "batches": batches,
                     "fraction": ((epoch - 1) * batches + batch) / (epochs * batches),
                     "message": f"baseline: epoch {epoch}/{epochs}"}
            if recipe.name == "deaf":
                try:
                    progress(event)
                except Cancelled:
                    time.sleep(3600)
            else:
                progress(event)
            if recipe.name == "frozen":
                os.kill(os.getpid(), signal.SIGSTOP)
    report = {"recipe": recipe.to_dict(), "fake": True, **_figures(recipe)}
    _files(recipe, out_dir, report["final"]["accuracy"])
    atomic_write_json(out_dir / "report.json", report)
    return report


def _target(recipe) -> float:
    if not recipe.steps:
        return 0.0
    step = recipe.steps[0]
    for name in ("final_sparsity", "rate"):
        value = getattr(step, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.5


def _figures(recipe) -> dict:
    target = _target(recipe)
    accuracy = round(0.95 - max(0.0, target - 0.8), 4)  # no loss up to 80% sparsity, then a point per point
    final = {"accuracy": accuracy, "sparsity": target, "tflite_zip_bytes": int(10000 * (1 - target)) + 500,
             "dc_bytes": int(5000 * (1 - target)) + 300, "export": recipe.export.value,
             "layers": [{"name": "fc1", "params": 1000, "nonzero": int(1000 * (1 - target)), "sparsity": target},
                        {"name": "output", "params": 100, "nonzero": 100, "sparsity": 0.0}]}
    stages = [{"method": s.method, "stats": {"early_stop": {"iteration": 40, "iterations": 100}}}
              for s in recipe.steps]
    return {"final": final, "stages": stages, "baseline": {"metrics": dict(final, accuracy=0.95, sparsity=0.0)},
            "dataset": {"name": "fake", "num_classes": 10, "class_names": [str(i) for i in range(10)]},
            "artifacts": {"tflite": "model.tflite", "keras": "model.keras", "baseline": "baseline.keras",
                          "predictions": "predictions.npz", "baseline_init": "baseline_init.npz"}}


def _files(recipe, out_dir, accuracy: float) -> None:
    import numpy as np

    rng = np.random.default_rng(recipe.baseline.seed)
    y = np.arange(50) % 10
    pred = np.where(rng.random(50) < accuracy, y, (y + 1) % 10)
    np.savez(out_dir / "predictions.npz", y_true=y, baseline_pred=y, final_pred=pred)
    np.savez(out_dir / "baseline_init.npz", w0=np.zeros(3))
    for name in ("baseline.keras", "model.keras", "model.tflite"):
        (out_dir / name).write_bytes(b"fake " + name.encode())
