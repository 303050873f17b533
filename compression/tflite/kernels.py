"""Which tensors of a TFLite file are which layer's kernel and bias: the one matcher.

A kernel is found by the graph, not by guessing from tensor shapes: it is the weights input
of a FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, CONV_3D, TRANSPOSE_CONV or BATCH_MATMUL
operator (through a DEQUANTIZE where the file stores float16 or int8 weights for float
kernels), and its bias is that operator's bias input (the converter folds a batch norm into
it, so it is the bias the file really holds). Each kernel is attributed to a Keras layer by
``layer_of`` over the kernel's own name, then the operator's output name. Measurement
(compression.engine.metrics) and the Deep Compression container (compression.dc) both use
this; no TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compression.tflite import reader
from compression.tflite.reader import FLOAT16, FLOAT32, INT4, INT8, INT32, ITEM_BYTES, UINT8, TensorInfo, TFLiteModel

_NUMPY = {FLOAT32: np.float32, FLOAT16: np.float16, INT32: np.int32, UINT8: np.uint8, INT8: np.int8}
# operator -> (weights input, bias input)
WEIGHT_OPS = {
    reader.FULLY_CONNECTED: (1, 2),
    reader.CONV_2D: (1, 2),
    reader.DEPTHWISE_CONV_2D: (1, 2),
    reader.CONV_3D: (1, 2),
    reader.TRANSPOSE_CONV: (1, 3),
    reader.BATCH_MATMUL: (1, None),
}
WRAPPER_PREFIXES = ("quant_", "prune_low_magnitude_", "cluster_")  # tfmot's wrapper names


@dataclass
class LayerWeights:
    """A layer's kernel (as stored) and bias, plus how to count distinct values."""

    name: str
    kernel: np.ndarray
    bias: np.ndarray | None = None
    channel_axis: int | None = None  # set where values are quantized per output channel
    dequantized: np.ndarray | None = None  # float view of a quantized kernel
    tensor: str = ""  # the kernel tensor's name in the file ('' for a Keras model)
    tensor_index: int | None = None  # its index in subgraph 0

    def values(self) -> np.ndarray:
        return self.kernel if self.dequantized is None else self.dequantized


@dataclass(frozen=True)
class KernelRef:
    """Where a layer's kernel and bias are in the file."""

    layer: str | None  # None: no layer name matches
    kernel: TensorInfo  # the constant holding the weights (behind any DEQUANTIZE)
    bias: TensorInfo | None
    op: reader.OperatorInfo


def layer_of(tensor_name: str, names) -> str | None:
    """The Keras layer a TFLite tensor name belongs to, or None.

    The converter joins the names of fused ops with ';' ("m/dw_relu/Relu6;m/dw_bn/FusedBatchNormV3;
    m/dw/depthwise") and prefixes tfmot-wrapped layers ("quant_fc1"). Every ';' part is looked at in
    order; within a part, the path tokens after the first (the model's own name), then the first;
    the first token naming a layer (after dropping a wrapper prefix) wins.
    """
    names = set(names)
    for part in str(tensor_name).split(";"):
        tokens = [t for t in part.split("/") if t]
        for token in tokens[1:] + tokens[:1]:
            for candidate in (token, *(token[len(p):] for p in WRAPPER_PREFIXES if token.startswith(p))):
                if candidate in names:
                    return candidate
    return None


def _constant(model: TFLiteModel, subgraph: int, index: int, producers: dict) -> TensorInfo | None:
    """The constant behind a tensor: itself when it holds data, else the input of the DEQUANTIZE making it."""
    t = model.tensor(subgraph, index)
    for _ in range(3):
        if t is None:
            return None
        if model.data(t) is not None:
            return t
        op = producers.get((subgraph, t.index))
        if op is None or op.builtin != reader.DEQUANTIZE or not op.inputs:
            return None
        t = model.tensor(subgraph, op.inputs[0])
    return None


def kernel_refs(model: TFLiteModel, layer_names) -> list[KernelRef]:
    """Every kernel the file's weight operators read, with its bias and layer, in operator order
    (a kernel read by several operators, as a shared layer is, appears once)."""
    names = list(layer_names)
    producers = {(op.subgraph, o): op for op in model.operators for o in op.outputs}
    out, seen = [], set()
    for op in model.operators:
        slots = WEIGHT_OPS.get(op.builtin)
        if slots is None or len(op.inputs) <= slots[0]:
            continue
        kernel = _constant(model, op.subgraph, op.inputs[slots[0]], producers)
        if kernel is None or len(kernel.shape) < 2 or (kernel.subgraph, kernel.index) in seen:
            continue
        seen.add((kernel.subgraph, kernel.index))
        bias = None
        if slots[1] is not None and len(op.inputs) > slots[1]:
            bias = _constant(model, op.subgraph, op.inputs[slots[1]], producers)
        out_names = [model.tensor(op.subgraph, o).name for o in op.outputs if model.tensor(op.subgraph, o)]
        layer = layer_of(kernel.name, names)
        for name in out_names:
            layer = layer or layer_of(name, names)
        out.append(KernelRef(layer, kernel, bias, op))
    return out


def array(tflite: bytes, model: TFLiteModel, tensor: TensorInfo) -> np.ndarray | None:
    """A constant tensor's values as stored (None for a type the studio does not read)."""
    dtype = _NUMPY.get(tensor.type)
    where = model.data(tensor)
    if where is None:
        return None
    offset, length = where
    if tensor.type == INT4:  # packed: two a byte, low nibble first; read as int8
        n = math.prod(tensor.shape)
        if length != (n + 1) // 2:
            return None
        packed = np.frombuffer(tflite, dtype=np.uint8, count=length, offset=offset)
        nibbles = np.stack([packed & 0x0F, packed >> 4], axis=1).reshape(-1)[:n].astype(np.int8)
        return np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8).reshape(tensor.shape)
    if dtype is None:
        return None
    if length != math.prod(tensor.shape) * ITEM_BYTES[tensor.type]:
        return None
    return np.frombuffer(tflite, dtype=dtype, count=math.prod(tensor.shape), offset=offset).reshape(tensor.shape)


def dequantize(arr: np.ndarray, tensor: TensorInfo) -> tuple[np.ndarray, int | None]:
    """(float values, per-channel axis or None) of a stored tensor; quantized types use the file's
    own scales and zero points."""
    scale = np.asarray(tensor.scale, dtype=np.float64)
    if scale.size and tensor.type in (INT4, INT8, UINT8, INT32):
        axis = int(tensor.quantized_dimension) if scale.size > 1 else None
        shape = [1] * arr.ndim
        if axis is not None:
            shape[axis] = -1
        zero = np.asarray(tensor.zero_point, dtype=np.float64)
        zero = zero if zero.size == scale.size else np.zeros_like(scale)
        return ((arr.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32), axis
    return arr.astype(np.float32), None


@dataclass
class FileWeights:
    """What a file holds for a set of Keras layers."""

    layers: list[LayerWeights]  # in the order of the names asked for
    unmatched: list[str]  # kernel tensors no layer name matches
    ambiguous: dict[str, list[str]]  # layer -> the kernel tensors that all matched it (more than one)


def read_weights(tflite: bytes, layer_names) -> FileWeights:
    """The kernels and biases of ``layer_names`` as the file stores them, found through its weight
    operators. Kernels keep their stored type; ``dequantized`` holds their float values."""
    tflite = bytes(tflite)
    model = reader.read(tflite)
    names = list(layer_names)
    found: dict[str, list[KernelRef]] = {}
    unmatched = []
    for ref in kernel_refs(model, names):
        if ref.layer is None:
            unmatched.append(ref.kernel.name)
        else:
            found.setdefault(ref.layer, []).append(ref)
    layers = []
    for name in names:
        refs = found.get(name)
        if not refs:
            continue
        ref = refs[0]
        stored = array(tflite, model, ref.kernel)
        if stored is None:
            continue
        values, axis = dequantize(stored, ref.kernel)
        bias = None
        if ref.bias is not None:
            b = array(tflite, model, ref.bias)
            bias = None if b is None else dequantize(b, ref.bias)[0]
        layers.append(LayerWeights(name, stored, bias, axis, values if stored.dtype != np.float32 else None,
                                   ref.kernel.name, ref.kernel.index))
    ambiguous = {k: [r.kernel.name for r in v] for k, v in found.items() if len(v) > 1}
    return FileWeights(layers, unmatched, ambiguous)


def tensor_layers(tflite: bytes, layer_names) -> dict[tuple[int, int], str]:
    """(subgraph, tensor index) of every kernel -> its layer name, for attributing per-tensor figures."""
    model = reader.read(bytes(tflite))
    return {(r.kernel.subgraph, r.kernel.index): r.layer for r in kernel_refs(model, layer_names) if r.layer}


__all__ = ["FileWeights", "KernelRef", "LayerWeights", "WEIGHT_OPS", "array", "dequantize", "kernel_refs",
           "layer_of", "read_weights", "tensor_layers"]
