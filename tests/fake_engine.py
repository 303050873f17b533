"""A stand-in for compression.engine.pipeline.run_recipe, for job-machinery tests: fast, no
TensorFlow, and able to show faults the real engine cannot be made to show on demand.
Selected in worker processes with COMPRESSION_RUNNER=fake_engine:run_recipe.

The recipe's name picks the behaviour: "fail" raises; "fail-late" writes into its folder as the
real engine starts to (removes stale results, writes recipe.json and a first file) and then fails
with a one-line UserError; "deaf" ignores Cancelled for a long
time; "frozen" stops its own process (SIGSTOP) after the first batch, as a hung process
would; anything else reports ``baseline.epochs`` epochs of 20 batches, 0.05 s each, and
writes report.json.
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
    report = {"recipe": recipe.to_dict(), "fake": True}
    atomic_write_json(out_dir / "report.json", report)
    return report
