""""Try it": run test samples through the baseline's and the compressed TFLite files with LiteRT.

LiteRT (``ai_edge_litert``) is not TensorFlow, so the dashboard may use it. The test split
comes from ``compression.data`` (numpy and scikit-learn), imported only when asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compression.recipe import exporters
from compression.store import runs
from compression.store.workspace import read_json

from compression.errors import UserError


@dataclass
class Prediction:
    label: int
    top: list[tuple[int, float]]  # (class, probability), best first


def baseline_tflite(run_dir: str | Path, recipe: dict | None = None) -> Path | None:
    """The baseline's TFLite file for a run: ``baseline.tflite`` in the run folder; for a baseline-only
    run its own ``model.tflite``; for a run built on a baseline job, that job's ``model.tflite``."""
    run_dir = Path(run_dir)
    own = run_dir / "baseline.tflite"
    if own.is_file():
        return own
    recipe = recipe or {}
    if not recipe.get("steps"):
        return runs.artifact_path(run_dir, exporters.primary().key)
    path = (recipe.get("baseline") or {}).get("path")
    if path:
        src = Path(path).parent
        try:
            src_recipe = json.loads((src / "recipe.json").read_text())
        except (OSError, ValueError):
            src_recipe = None
        if isinstance(src_recipe, dict) and not src_recipe.get("steps"):
            return runs.artifact_path(src, exporters.primary().key)
    return None


def test_split(dataset) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """x_test, y_test and class names of a recipe's dataset (as the engine prepares them)."""
    from compression.inputs import data  # late: only when a user asks to try samples

    ds = data.load(dataset)
    return ds.x_test, ds.y_test, list(ds.class_names)


def _input(tflite_path: str | Path) -> dict:
    report = read_json(Path(tflite_path).parent / "report.json")
    inp = report.get("input") if isinstance(report, dict) else None
    return inp if isinstance(inp, dict) else {}


def input_factor(tflite_path: str | Path) -> float:
    """What the loaders' [0, 1] samples must be multiplied by for this file: its run's report says
    whether the file takes raw pixel values (``input.raw_scale``); 1 for older runs and user models."""
    scale = _input(tflite_path).get("raw_scale")
    return float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0 else 1.0


def fitted_samples(tflite_path: str | Path, x: np.ndarray) -> np.ndarray:
    """The loaders' samples as this file takes them: adapted to its input as the run adapted the dataset
    (``input.adapt``: padded, resized, channels copied, reshaped; compression.inputs.data.adapt_samples)
    and scaled to raw values where the file takes them."""
    from compression.inputs import data

    spec = _input(tflite_path).get("adapt")
    x = np.asarray(x, dtype=np.float32)
    if isinstance(spec, dict) and spec.get("kind") in ("reshape", "pad", "resize"):
        try:
            x = data.adapt_samples(x, spec)
        except (KeyError, TypeError, ValueError):
            pass  # a damaged spec: the reshape below still fits samples of the right size
    return x * input_factor(tflite_path)


def _interpreter(path: str | Path):
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path))
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise UserError(f"{Path(path).name} cannot be loaded by LiteRT: {str(e).splitlines()[0]}") from None
    return interp


def predict(path: str | Path, x: np.ndarray, top_k: int = 3) -> list[Prediction]:
    """Run every sample of ``x`` (batch of 1 each) through a TFLite file; quantized inputs and
    outputs are (de)quantized with the file's own scale and zero point."""
    interp = _interpreter(path)
    x = fitted_samples(path, x)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    shape = [int(d) for d in inp["shape"]]
    preds = []
    for sample in np.asarray(x, dtype=np.float32):
        v = sample.reshape([1] + shape[1:]) if int(np.prod(shape[1:])) == sample.size else sample[None]
        if inp["dtype"] in (np.int8, np.uint8):
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            v = np.clip(np.round(v / (scale or 1.0) + zero), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], v.astype(inp["dtype"]))
        interp.invoke()
        y = interp.get_tensor(out["index"])[0].astype(np.float32)
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero = out["quantization"]
            y = (y - zero) * (scale or 1.0)
        if y.min() < 0 or abs(float(y.sum()) - 1.0) > 1e-2:  # logits: make probabilities
            e = np.exp(y - y.max())
            y = e / e.sum()
        order = np.argsort(-y)[:top_k]
        preds.append(Prediction(int(order[0]), [(int(c), float(y[c])) for c in order]))
    return preds


def to_image(sample: np.ndarray, scale: int = 12) -> np.ndarray | None:
    """An upscaled uint8 picture of an image sample (None for non-image inputs)."""
    img = np.asarray(sample, dtype=np.float32)
    if img.ndim == 3 and img.shape[-1] in (1, 3):
        img = img[..., 0] if img.shape[-1] == 1 else img
    if img.ndim not in (2, 3):
        return None
    lo, hi = float(img.min()), float(img.max())
    img = ((img - lo) / (hi - lo + 1e-9) * 255).astype(np.uint8)
    s = scale if max(img.shape[:2]) <= 16 else max(1, scale // 4)
    return np.kron(img, np.ones((s, s) + (1,) * (img.ndim - 2), dtype=np.uint8)) if s > 1 else img
