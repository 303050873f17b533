"""A user's big Keras 3 model through the studio: load -> prune 50% -> int8 export, measured.

    python bench/big_model.py            # MobileNetV2 (alpha 1.0, 32x32x3, 1000 classes): 3.5 M weights
    python bench/big_model.py --quick    # a tiny Keras 3 CNN, the same path (what tests/test_keras3.py runs)

The model is saved by Keras 3 (``keras.applications.MobileNetV2(weights=None)``) in a
subprocess without TF_USE_LEGACY_KERAS, exactly as a user's ``model.save("x.keras")``
writes it; the data are random 32x32x3 images. The run is ``compression.engine.pipeline.
run_recipe`` as the worker calls it. Printed (and written to <out>/bench.json): wall time of
each phase, the peak resident memory of this process and of its subprocesses (Keras 3
saving the model and computing the reference outputs), and the sizes of the run's files.
weights.json and predictions.npz must stay small whatever the model's size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import compression  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)

import numpy as np  # noqa: E402

SAVE = r"""
import sys
import keras
path, quick, classes = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
if quick:
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = L.BatchNormalization()(y)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(classes, activation="softmax")(x)
    model = keras.Model(inp, out)
else:
    model = keras.applications.MobileNetV2(alpha=1.0, input_shape=(32, 32, 3), weights=None, classes=classes)
model.save(path)
print(model.count_params())
"""

MB = 1024 * 1024


def peak_rss_bytes(who=resource.RUSAGE_SELF) -> int:
    return int(resource.getrusage(who).ru_maxrss) * 1024  # kilobytes on Linux


def save_keras3_model(path: Path, quick: bool, classes: int) -> int:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update({"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
    proc = subprocess.run([sys.executable, "-c", SAVE, str(path), "1" if quick else "0", str(classes)],
                          env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"Keras 3 could not save the model: {proc.stderr.strip().splitlines()[-1:]}")
    return int(proc.stdout.strip().splitlines()[-1])


def random_images(path: Path, classes: int, n_train: int, n_test: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    y_train = np.arange(n_train) % classes
    y_test = np.arange(n_test) % classes
    y_train[0] = y_test[0] = classes - 1  # the dataset has as many classes as the model
    np.savez(path, x_train=rng.random((n_train, 32, 32, 3), dtype=np.float32), y_train=y_train,
             x_test=rng.random((n_test, 32, 32, 3), dtype=np.float32), y_test=y_test)


def run(quick: bool, out: Path) -> dict:
    from compression.engine import models
    from compression.engine.pipeline import run_recipe
    from compression.recipe import Recipe

    out.mkdir(parents=True, exist_ok=True)
    classes = 10 if quick else 1000
    model_path, data_path = out / "user_model.keras", out / "random32.npz"
    t0 = time.perf_counter()
    params = save_keras3_model(model_path, quick, classes)
    save_s = time.perf_counter() - t0
    random_images(data_path, classes, n_train=32 if quick else 64, n_test=16 if quick else 32)

    load_s = None
    if not quick:  # conversion + the check against Keras 3, timed alone (the run loads it again)
        t0 = time.perf_counter()
        models.load_model(model_path)
        load_s = round(time.perf_counter() - t0, 1)
    rss_after_load = peak_rss_bytes()

    recipe = Recipe.from_dict({
        "name": "big-model-bench",
        "dataset": {"npz": str(data_path)},
        "baseline": {"path": str(model_path)},
        "steps": [{"method": "prune", "schedule": "constant_sparsity", "target_sparsity": 0.5, "epochs": 1,
                   "batch_size": 16}],
        "export": "int8_full",
        "latency_runs": 3,
    })
    run_dir = out / "run"
    t0 = time.perf_counter()
    report = run_recipe(recipe, run_dir)
    run_s = time.perf_counter() - t0
    sizes = {name: (run_dir / name).stat().st_size for name in
             ("weights.json", "predictions.npz", "model.tflite", "model.keras", "baseline.keras", "report.json",
              "model.dc") if (run_dir / name).exists()}
    result = {
        "model": "tiny Keras 3 CNN" if quick else "keras.applications.MobileNetV2(alpha=1.0, 32x32x3, 1000 classes)",
        "params": params,
        "kernel_layers": len(report["final"]["layers"]),
        "save_keras3_s": round(save_s, 1),
        "load_and_check_s": load_s,
        "run_recipe_s": round(run_s, 1),
        "stage_wall_s": {"baseline": report["baseline"]["wall_s"],
                         **{s["method"]: s["wall_s"] for s in report["stages"]},
                         "export": report["final"]["wall_s"]},
        "peak_rss_mb": round(peak_rss_bytes() / MB, 1),
        "peak_rss_after_load_mb": round(rss_after_load / MB, 1),
        "peak_rss_subprocess_mb": round(peak_rss_bytes(resource.RUSAGE_CHILDREN) / MB, 1),
        "file_bytes": sizes,
        "final_sparsity": round(report["final"]["sparsity"], 4),
        "prune_achieved": report["stages"][0]["stats"]["target_sparsity"]["achieved"],
    }
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model instead of the 3.5 M-weight MobileNetV2")
    parser.add_argument("--out", type=Path, default=None, help="folder for the model, data and run (default: temp)")
    args = parser.parse_args(argv)
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.quick, Path(tmp))
    else:
        result = run(args.quick, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
