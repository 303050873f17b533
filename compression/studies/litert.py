"""Predicted labels of an exported file over many samples, with LiteRT (not TensorFlow).

The samples are the loaders' (values in [0, 1]); they are fitted to the file as its run fitted
the dataset (``report["input"]``: the adaptation spec, and the raw-value scale a studio baseline's
file takes), quantized where the file's input is int8, and run in batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compression.errors import UserError

BATCH = 512


def fit_samples(x: np.ndarray, input_spec: dict | None) -> np.ndarray:
    """Samples as the file takes them: adapted (``input.adapt``) and scaled (``input.raw_scale``)."""
    from compression.inputs import data

    spec = input_spec if isinstance(input_spec, dict) else {}
    x = np.asarray(x, dtype=np.float32)
    adapt = spec.get("adapt")
    if isinstance(adapt, dict) and adapt.get("kind") in ("reshape", "pad", "resize"):
        x = data.adapt_samples(x, adapt)
    scale = spec.get("raw_scale")
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0:
        x = x * float(scale)
    return x.astype(np.float32)


def predict_labels(path: str | Path, x: np.ndarray, input_spec: dict | None = None, batch: int = BATCH) -> np.ndarray:
    """The class each sample of ``x`` gets from the TFLite file at ``path`` (argmax of its output)."""
    from ai_edge_litert.interpreter import Interpreter

    x = fit_samples(x, input_spec)
    try:
        interp = Interpreter(model_path=str(path), num_threads=1)  # no thread pool in a process that forks
    except (ValueError, RuntimeError) as e:
        raise UserError(f"{Path(path).name} cannot be loaded by LiteRT: {str(e).splitlines()[0]}") from None
    inp = interp.get_input_details()[0]
    shape = [int(d) for d in inp["shape"]]
    sample = shape[1:]
    if int(np.prod(sample)) != int(np.prod(x.shape[1:])):
        raise UserError(f"{Path(path).name} takes samples of shape {sample}, not {list(x.shape[1:])}")
    x = x.reshape((len(x), *sample))
    out_labels = np.empty(len(x), dtype=np.int64)
    size = None
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        if len(chunk) != size:
            interp.resize_tensor_input(inp["index"], [len(chunk), *sample], strict=False)
            interp.allocate_tensors()
            size = len(chunk)
            inp = interp.get_input_details()[0]
            out = interp.get_output_details()[0]
        v = chunk
        if inp["dtype"] in (np.int8, np.uint8):
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            v = np.clip(np.round(v / (scale or 1.0) + zero), info.min, info.max)
        interp.set_tensor(inp["index"], v.astype(inp["dtype"]))
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)  # the argmax ignores a positive scale
        out_labels[start:start + len(chunk)] = np.argmax(y.reshape(len(chunk), -1), axis=1)
    return out_labels


__all__ = ["fit_samples", "predict_labels"]
