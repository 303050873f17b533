"""Measurements on artifacts: Keras weights, TFLite files and their predictions.

Every number in a report comes from here, measured on the model or file itself:
sparsity and distinct values are counted in the weights (for the exported file, in the
file's own tensors), sizes are file sizes, latency is timed on the TFLite interpreter.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
import zipfile
from dataclasses import dataclass

import numpy as np

HIST_BINS = 60
MAX_LISTED_VALUES = 64

# TFLite tensor types (schema.fbs TensorType)
TFL_FLOAT32, TFL_FLOAT16, TFL_INT32, TFL_UINT8, TFL_INT8 = 0, 1, 2, 3, 9
_NUMPY = {TFL_FLOAT32: np.float32, TFL_FLOAT16: np.float16, TFL_INT32: np.int32, TFL_UINT8: np.uint8,
          TFL_INT8: np.int8}


# --- weights -------------------------------------------------------------------------------


@dataclass
class LayerWeights:
    """A layer's kernel (as stored) and bias, plus how to count distinct values."""

    name: str
    kernel: np.ndarray
    bias: np.ndarray | None = None
    channel_axis: int | None = None  # set where values are quantized per output channel
    dequantized: np.ndarray | None = None  # float view of a quantized kernel

    def values(self) -> np.ndarray:
        return self.kernel if self.dequantized is None else self.dequantized


def unique_count(kernel: np.ndarray) -> int:
    """Distinct values in the whole layer (the one unit of "distinct values")."""
    return int(np.unique(kernel).size)


def unique_per_channel(kernel: np.ndarray, channel_axis: int | None) -> int | None:
    """The largest count of distinct values in one output channel, for files that quantize per
    channel (each channel has its own scale, so a clustered layer shows its clusters per
    channel); None where the file does not quantize per channel."""
    if channel_axis is None:
        return None
    moved = np.moveaxis(kernel, channel_axis, 0).reshape(kernel.shape[channel_axis], -1)
    return int(max(np.unique(row).size for row in moved))


def layer_stats(weights: list[LayerWeights]) -> tuple[list[dict], dict]:
    rows = []
    for lw in weights:
        k = lw.kernel
        nonzero_k = int(np.count_nonzero(k))
        bias_n = 0 if lw.bias is None else int(lw.bias.size)
        bias_nz = 0 if lw.bias is None else int(np.count_nonzero(lw.bias))
        rows.append({
            "name": lw.name,
            "params": int(k.size) + bias_n,
            "nonzero": nonzero_k + bias_nz,
            "sparsity": float(1 - nonzero_k / k.size) if k.size else 0.0,
            "unique_values": unique_count(k),
            "unique_values_per_channel": unique_per_channel(k, lw.channel_axis),
        })
    total = sum(r["params"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    kernel_total = sum(int(lw.kernel.size) for lw in weights)
    kernel_nonzero = sum(int(np.count_nonzero(lw.kernel)) for lw in weights)
    summary = {
        "params_total": int(total),
        "params_nonzero": int(nonzero),
        "sparsity": float(1 - kernel_nonzero / kernel_total) if kernel_total else 0.0,
    }
    return rows, summary


# Where a layer keeps the weights methods act on: Dense and Conv*D ``kernel``, DepthwiseConv2D
# ``depthwise_kernel``. (SeparableConv2D files from Keras 3 arrive split into these two kinds.)
KERNEL_ATTRS = ("kernel", "depthwise_kernel")


def kernel_of(layer):
    """The kernel variable of a layer (unwrapping tfmot's wrappers), or None."""
    inner = getattr(layer, "layer", layer)  # QuantizeWrapper / PruneLowMagnitude hold the layer
    for attr in KERNEL_ATTRS:
        kernel = getattr(inner, attr, None)
        if kernel is not None:
            return kernel
    return None


def keras_weights(model) -> list[LayerWeights]:
    """Kernels and biases of a plain or QAT Keras model, by the original layer names."""
    out = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # QuantizeWrapper holds the layer
        kernel = kernel_of(inner)
        if kernel is None:
            continue
        bias = getattr(inner, "bias", None)
        out.append(LayerWeights(inner.name, np.asarray(kernel.numpy()),
                                None if bias is None else np.asarray(bias.numpy())))
    return out


def _layer_of(tensor_name: str, names: set[str]) -> str | None:
    """The kernel layer a TFLite tensor belongs to. The converter fuses ops and joins their names
    with ';' (a depthwise conv folded with its batch norm and ReLU6 is
    "m/dw_relu/Relu6;m/dw_bn/FusedBatchNormV3;m/dw/depthwise"), so every part is looked at, in
    order, and the first that names a kernel layer wins."""
    for part in tensor_name.split(";"):
        tokens = part.split("/")
        for token in tokens[1:] + tokens[:1]:
            for prefix in ("quant_", "prune_low_magnitude_", "cluster_"):
                if token.startswith(prefix) and token[len(prefix):] in names:
                    return token[len(prefix):]
            if token in names:
                return token
    return None


def tflite_weights(tflite: bytes, layer_names: list[str]) -> list[LayerWeights]:
    """Constant kernels and biases read from a .tflite file, matched to Keras layer names.

    Kernels keep their stored type (int8 values are counted as stored; per-channel
    quantized tensors are counted per channel). ``dequantized`` holds the float values.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    fb = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    names = set(layer_names)
    kernels: dict[str, LayerWeights] = {}
    biases: dict[str, np.ndarray] = {}
    for tensor in fb.subgraphs[0].tensors:
        data = fb.buffers[tensor.buffer].data if tensor.buffer < len(fb.buffers) else None
        if data is None or len(data) == 0 or tensor.type not in _NUMPY:
            continue
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        layer = _layer_of(name, names)
        if layer is None:
            continue
        shape = [int(d) for d in tensor.shape]
        arr = np.frombuffer(bytes(np.asarray(data, dtype=np.uint8)), dtype=_NUMPY[tensor.type]).reshape(shape)
        q = tensor.quantization
        scale = None if q is None or q.scale is None else np.asarray(q.scale, dtype=np.float64)
        zero = None if q is None or q.zeroPoint is None else np.asarray(q.zeroPoint, dtype=np.float64)
        deq = None
        axis = None
        if scale is not None and scale.size and tensor.type in (TFL_INT8, TFL_UINT8, TFL_INT32):
            axis = int(q.quantizedDimension) if scale.size > 1 else None
            bshape = [1] * arr.ndim
            if axis is not None:
                bshape[axis] = -1
            z = zero if zero is not None and zero.size == scale.size else np.zeros_like(scale)
            deq = ((arr.astype(np.float64) - z.reshape(bshape)) * scale.reshape(bshape)).astype(np.float32)
        if arr.ndim >= 2 and tensor.type != TFL_INT32:
            kernels[layer] = LayerWeights(layer, arr, None, axis,
                                          deq if deq is not None else arr.astype(np.float32))
        elif arr.ndim == 1:
            biases[layer] = deq if deq is not None else arr.astype(np.float32)
    out = []
    for name in layer_names:  # model order
        if name in kernels:
            lw = kernels[name]
            lw.bias = biases.get(name)
            out.append(lw)
    return out


# --- sizes ---------------------------------------------------------------------------------


def zipped_size(data: bytes, name: str = "model") -> int:
    """Size of ``data`` in a deflated zip archive: what a download or an app bundle costs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return len(buf.getvalue())


# --- running TFLite files ------------------------------------------------------------------


def interpreter(tflite: bytes, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=tflite, num_threads=threads)


def _quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def tflite_predict(tflite: bytes, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predicted classes of a TFLite file over ``x``, in batches."""
    interp = interpreter(tflite, threads=2)
    inp = interp.get_input_details()[0]
    out_index = interp.get_output_details()[0]["index"]
    preds = []
    current = None
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        if current != len(chunk):
            interp.resize_tensor_input(inp["index"], [len(chunk), *x.shape[1:]])
            interp.allocate_tensors()
            current = len(chunk)
            inp = interp.get_input_details()[0]
        interp.set_tensor(inp["index"], _quantize_input(chunk, inp))
        interp.invoke()
        preds.append(np.argmax(interp.get_tensor(out_index), axis=-1))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def timing_lock(timeout_s: float = 600.0):
    """A machine-wide lock around latency timing, so that two jobs never time at once (each
    would slow the other). After ``timeout_s`` the timing runs anyway."""
    from filelock import FileLock

    return FileLock(os.path.join(tempfile.gettempdir(), "compression-timing.lock"), timeout=timeout_s)


def latency_ms(tflite: bytes, sample: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
    """Median wall time of one batch-1 invoke on one thread, after warm-up, while no other
    job on this machine is timing (see ``timing_lock``)."""
    from filelock import Timeout

    lock = timing_lock()
    try:
        lock.acquire()
    except Timeout:
        lock = None
    try:
        return _latency_ms(tflite, sample, runs, warmup)
    finally:
        if lock is not None:
            lock.release()


def _latency_ms(tflite: bytes, sample: np.ndarray, runs: int, warmup: int) -> float:
    interp = interpreter(tflite, threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = _quantize_input(np.asarray(sample, dtype=np.float32)[None, ...], inp)
    for _ in range(warmup):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
    times = []
    for _ in range(runs):
        interp.set_tensor(inp["index"], x)
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> list[float | None]:
    """Recall of each class; None for a class absent from the test split."""
    out: list[float | None] = []
    for c in range(num_classes):
        mask = y_true == c
        out.append(float(np.mean(y_pred[mask] == c)) if mask.any() else None)
    return out


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0


# --- what the dashboard draws -------------------------------------------------------------


def histogram(name: str, values: np.ndarray) -> dict:
    """60 fixed-width bins over the nonzero weights; exact zeros counted apart."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    nonzero = flat[flat != 0]
    zeros = int(flat.size - nonzero.size)
    if nonzero.size:
        lo, hi = float(nonzero.min()), float(nonzero.max())
        if lo == hi:
            lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
        counts, edges = np.histogram(nonzero, bins=HIST_BINS, range=(lo, hi))
    else:
        counts, edges = np.zeros(HIST_BINS, dtype=int), np.linspace(-1, 1, HIST_BINS + 1)
    uniq, ucounts = np.unique(flat, return_counts=True)
    listed = uniq.size <= MAX_LISTED_VALUES
    return {
        "name": name,
        "bin_edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "zeros": zeros,
        "total": int(flat.size),
        "min": float(flat.min()) if flat.size else 0.0,
        "max": float(flat.max()) if flat.size else 0.0,
        "values": [float(v) for v in uniq] if listed else None,
        "value_counts": [int(c) for c in ucounts] if listed else None,
    }


def histograms(weights: list[LayerWeights]) -> list[dict]:
    return [histogram(lw.name, lw.values()) for lw in weights]
