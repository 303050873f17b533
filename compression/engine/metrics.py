"""Measurements on artifacts: Keras weights, TFLite files and their predictions.

Every number in a report comes from here, measured on the model or file itself:
sparsity and distinct values are counted in the weights (for the exported file, in the
file's own tensors), sizes are file sizes, latency is timed on the TFLite interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import tempfile
import time
import zipfile

import numpy as np

from compression.tflite.kernels import LayerWeights, read_weights

HIST_BINS = 60
MAX_LISTED_VALUES = 64

# --- weights -------------------------------------------------------------------------------


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


def file_layout(kernel: np.ndarray, like: np.ndarray) -> np.ndarray | None:
    """A Keras kernel laid out as a TFLite file stores it (Dense [in, out] -> [out, in]; Conv2D
    [h, w, in, out] -> [out, h, w, in]; DepthwiseConv2D [h, w, in, m] -> [1, h, w, in*m]), chosen
    as the layout of ``like``'s shape whose values agree best with ``like``; None if none fits."""
    k = np.asarray(kernel)
    candidates = [k]
    if k.ndim == 2:
        candidates.append(k.T)
    if k.ndim == 4:
        candidates += [np.transpose(k, (3, 0, 1, 2)), k.reshape(1, k.shape[0], k.shape[1], -1)]
    if k.ndim == 5:
        candidates.append(np.transpose(k, (4, 0, 1, 2, 3)))
    fitting = [c for c in candidates if c.shape == like.shape]
    if not fitting:
        return None
    target = np.asarray(like, dtype=np.float64)
    return min(fitting, key=lambda c: float(np.mean(np.abs(c.astype(np.float64) - target))))


def layer_stats(weights: list[LayerWeights], reference: dict[str, np.ndarray] | None = None
                ) -> tuple[list[dict], dict]:
    """Per-layer rows and totals. ``sparsity`` is the share of kernel weights that are zero.

    With ``reference`` (layer -> the float kernel the file was made from), zeros are told apart:
    ``sparsity`` counts only weights that were already zero (pruned), ``zeros_rounded`` the share
    the quantizer rounded to zero, and ``revived`` the share of pruned weights the file holds as
    nonzero (an export that undid sparsity).
    """
    rows = []
    pruned_total = rounded_total = 0
    for lw in weights:
        k = lw.kernel
        zero = lw.values() == 0
        nonzero_k = int(np.count_nonzero(k))
        bias_n = 0 if lw.bias is None else int(lw.bias.size)
        bias_nz = 0 if lw.bias is None else int(np.count_nonzero(lw.bias))
        ref = file_layout(reference[lw.name], lw.values()) if reference and lw.name in reference else None
        if ref is not None:
            was_zero = ref == 0
            pruned, rounded, revived = int((zero & was_zero).sum()), int((zero & ~was_zero).sum()), \
                int((~zero & was_zero).sum())
        else:
            pruned, rounded, revived = int(zero.sum()), None, None
        pruned_total += pruned
        rounded_total += rounded or 0
        rows.append({
            "name": lw.name,
            "params": int(k.size) + bias_n,
            "nonzero": nonzero_k + bias_nz,
            "sparsity": float(pruned / k.size) if k.size else 0.0,
            "zeros_rounded": None if rounded is None else float(rounded / k.size),
            "revived": None if revived is None else float(revived / k.size),
            "unique_values": unique_count(k),
            "unique_values_per_channel": unique_per_channel(k, lw.channel_axis),
        })
    total = sum(r["params"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    kernel_total = sum(int(lw.kernel.size) for lw in weights)
    summary = {
        "params_total": int(total),
        "params_nonzero": int(nonzero),
        "sparsity": float(pruned_total / kernel_total) if kernel_total else 0.0,
    }
    if reference:
        summary["zeros_rounded"] = float(rounded_total / kernel_total) if kernel_total else 0.0
    return rows, summary


# Where a layer keeps the weights methods act on: Dense and Conv*D ``kernel``, DepthwiseConv2D
# ``depthwise_kernel``. (SeparableConv2D files from Keras 3 arrive split into these two kinds.)
KERNEL_ATTRS = ("kernel", "depthwise_kernel")


def kernel_of(layer):
    """The kernel variable of a layer (unwrapping tfmot's wrappers), or None.

    A QAT wrapper replaces the layer's ``kernel`` attribute by a graph tensor (the quantized
    weights); the variable itself is then found among the layer's weights by its name."""
    inner = getattr(layer, "layer", layer)  # QuantizeWrapper / PruneLowMagnitude hold the layer
    for attr in KERNEL_ATTRS:
        kernel = getattr(inner, attr, None)
        if kernel is not None and hasattr(kernel, "numpy"):
            return kernel
    if any(getattr(inner, attr, None) is not None for attr in KERNEL_ATTRS):
        for w in list(getattr(layer, "weights", [])) + list(getattr(inner, "weights", [])):
            if w.name.split(":")[0] in {f"{inner.name}/{attr}" for attr in KERNEL_ATTRS}:
                return w
    return None


def _holders(model) -> list:
    """(layer, the layer or tfmot wrapper holding its weights) of every layer with a kernel, in model
    order, walking into nested models (a Keras model used as a layer of another)."""
    out = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # tfmot's wrappers hold the layer
        if kernel_of(layer) is not None:
            out.append((inner, layer))
        elif hasattr(inner, "layers") and not hasattr(layer, "layer"):  # a nested model
            out.extend(_holders(inner))
    return out


def weight_layers(model) -> list:
    """Every layer with a kernel, in model order, nested models included: the layers methods act on
    and figures count."""
    return [inner for inner, _holder in _holders(model)]


def keras_weights(model) -> list[LayerWeights]:
    """Kernels and biases of a plain or QAT Keras model, by the original layer names, nested models included."""
    out = []
    for inner, holder in _holders(model):
        kernel = kernel_of(holder)
        bias = getattr(inner, "bias", None)
        bias = bias if bias is None or hasattr(bias, "numpy") else None
        out.append(LayerWeights(inner.name, np.asarray(kernel.numpy()),
                                None if bias is None else np.asarray(bias.numpy())))
    return out


def tflite_weights(tflite: bytes, layer_names: list[str]) -> list[LayerWeights]:
    """Kernels and biases read from a .tflite file through its weight operators (compression.tflite),
    matched to Keras layer names. Kernels keep their stored type; ``dequantized`` holds float values."""
    return read_weights(tflite, layer_names).layers


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


# --- latency, timed only on a quiet machine -------------------------------------------------------
# Every process that trains holds a shared lock on one file for as long as it trains; timing takes
# the same lock exclusively, so it waits until no job on this machine is training (and no other job
# is timing). After COMPRESSION_LATENCY_WAIT_S seconds (default 120) it times anyway and says so.
# A run times all its files at its end, in one wait.

LOCK_ENV = "COMPRESSION_ACTIVITY_LOCK"  # the machine-wide lock file (tests use their own)
WAIT_ENV = "COMPRESSION_LATENCY_WAIT_S"


def activity_lock_path() -> str:
    return os.environ.get(LOCK_ENV) or os.path.join(tempfile.gettempdir(), "compression-activity.lock")


def _lock_fd() -> int | None:
    try:
        return os.open(activity_lock_path(), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return None


@contextlib.contextmanager
def training_activity():
    """Held while this process trains: a latency timing anywhere on the machine waits for it to end."""
    fd = _lock_fd()
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing drops the lock


DEFAULT_WAIT_S = 120.0


def latency_wait_s() -> float:
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, "") or DEFAULT_WAIT_S))
    except ValueError:
        return DEFAULT_WAIT_S


def latencies(files: list[tuple[bytes, np.ndarray]], runs: int = 50, warmup: int = 5) -> list[dict]:
    """Latency of several TFLite files (each with a sample), timed one after the other in one quiet
    moment, so that a run waits once and its stages are compared under the same conditions: the
    median wall time of one batch-1 invoke on one thread after warm-up, its spread (the interquartile
    range), and whether the machine was quiet (no job training or timing meanwhile).

    [{"latency_ms", "latency_spread_ms", "latency_quiet"}, ...].
    """
    fd = _lock_fd()
    quiet = False
    deadline = time.monotonic() + latency_wait_s()
    out = []
    try:
        while fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                quiet = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
        for tflite, sample in files:
            q1, median, q3 = (float(v) for v in np.percentile(_times_ms(tflite, sample, runs, warmup), [25, 50, 75]))
            out.append({"latency_ms": median, "latency_spread_ms": q3 - q1, "latency_quiet": quiet})
    finally:
        if fd is not None:
            os.close(fd)
    return out


def latency(tflite: bytes, sample: np.ndarray, runs: int = 50, warmup: int = 5) -> dict:
    """One file's latency (see ``latencies``)."""
    return latencies([(tflite, sample)], runs, warmup)[0]


def latency_ms(tflite: bytes, sample: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
    return latency(tflite, sample, runs, warmup)["latency_ms"]


def _times_ms(tflite: bytes, sample: np.ndarray, runs: int, warmup: int) -> list[float]:
    interp = interpreter(tflite, threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = _quantize_input(np.asarray(sample, dtype=np.float32)[None, ...], inp)
    for _ in range(warmup):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
    times = []
    for _ in range(max(1, runs)):
        interp.set_tensor(inp["index"], x)
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


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
