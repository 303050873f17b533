"""The one TFLite reader: a read-only FlatBuffers reader for the parts of the schema the studio
needs, without TensorFlow. Measurement (compression.tflite.kernels) and the Deep Compression
container (compression.dc) both read files through it.

It reads Model.buffers (where every buffer's bytes lie in the file), the operator codes, and
every subgraph's tensors (shape, type, buffer index, name, quantization scale/zero
point/dimension) and operators (opcode, input and output tensors), after
tensorflow/lite/schema/schema.fbs. Every offset and length is checked against the file
size: a damaged file raises TFLiteFileError with one line, never IndexError.

FlatBuffers layout in short: the file starts with a uint32 offset to the root table and
the 4-byte identifier "TFL3". A table starts with an int32 distance back to its vtable;
the vtable holds uint16 sizes and then one uint16 offset per field (0 = absent, default).
Offset fields (tables, vectors, strings) hold a uint32 relative to where they are stored.
A vector is a uint32 element count followed by the elements.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from compression.errors import TFLiteFileError

IDENTIFIER = b"TFL3"

# TensorType in schema.fbs
FLOAT32, FLOAT16, INT32, UINT8, INT64, STRING, BOOL, INT16, COMPLEX64, INT8 = range(10)
INT4 = 17  # two weights a byte, the first in the low four bits (ai-edge-quantizer's int4 files)
TYPE_NAMES = {FLOAT32: "float32", FLOAT16: "float16", INT32: "int32", UINT8: "uint8", INT64: "int64",
              STRING: "string", BOOL: "bool", INT16: "int16", COMPLEX64: "complex64", INT8: "int8", INT4: "int4"}
ITEM_BYTES = {FLOAT32: 4, FLOAT16: 2, INT32: 4, UINT8: 1, INT64: 8, BOOL: 1, INT16: 2, COMPLEX64: 8, INT8: 1}

# BuiltinOperator codes the studio looks at
CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, FULLY_CONNECTED = 3, 4, 6, 9
TRANSPOSE_CONV, BATCH_MATMUL, CONV_3D = 67, 126, 132

# field numbers (vtable slot index) per table
_MODEL_VERSION, _MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS = 0, 1, 2, 4
_OPCODE_DEPRECATED, _OPCODE_CUSTOM, _OPCODE_BUILTIN = 0, 1, 3
_SUBGRAPH_TENSORS, _SUBGRAPH_OPERATORS, _SUBGRAPH_NAME = 0, 3, 4
_OPERATOR_OPCODE, _OPERATOR_INPUTS, _OPERATOR_OUTPUTS = 0, 1, 2
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER, _TENSOR_NAME, _TENSOR_QUANT = 0, 1, 2, 3, 4
_QUANT_SCALE, _QUANT_ZERO_POINT, _QUANT_DIMENSION = 2, 3, 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


@dataclass(frozen=True)
class BufferInfo:
    index: int
    offset: int  # byte offset of the buffer's data in the file
    length: int  # bytes (0 for an empty buffer)


@dataclass(frozen=True)
class TensorInfo:
    subgraph: int
    index: int
    name: str
    shape: tuple[int, ...]
    type: int
    buffer: int
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type{self.type}")


@dataclass(frozen=True)
class OperatorInfo:
    subgraph: int
    index: int
    builtin: int  # BuiltinOperator code (-1 for a custom op)
    inputs: tuple[int, ...]  # tensor indices in the subgraph; -1 for an omitted optional input
    outputs: tuple[int, ...]


@dataclass
class TFLiteModel:
    version: int
    buffers: list[BufferInfo] = field(default_factory=list)
    tensors: list[TensorInfo] = field(default_factory=list)
    operators: list[OperatorInfo] = field(default_factory=list)

    def tensor(self, subgraph: int, index: int) -> TensorInfo | None:
        """A subgraph's tensor by its index, or None for -1 or an index out of range."""
        if index < 0:
            return None
        found = self._by_index().get((subgraph, index))
        return found

    def _by_index(self) -> dict:
        cache = self.__dict__.get("_index")
        if cache is None:
            cache = {(t.subgraph, t.index): t for t in self.tensors}
            self.__dict__["_index"] = cache
        return cache

    def data(self, tensor: TensorInfo) -> tuple[int, int] | None:
        """(offset, length) of a constant tensor's bytes in the file, or None for a tensor without data."""
        if not 0 < tensor.buffer < len(self.buffers):
            return None
        buf = self.buffers[tensor.buffer]
        return (buf.offset, buf.length) if buf.length else None


class _Reader:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.size = len(buf)

    def fail(self, what: str):
        raise TFLiteFileError(f"not a valid TFLite file: {what}")

    def _unpack(self, fmt: str, pos: int):
        n = struct.calcsize(fmt)
        if pos < 0 or pos + n > self.size:
            self.fail(f"offset {pos} lies outside the file ({self.size} bytes)")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def u32(self, pos: int) -> int:
        return self._unpack("<I", pos)

    def table(self, pos: int) -> "_Table":
        vtable = pos - self._unpack("<i", pos)
        vsize = self._unpack("<H", vtable)
        if vsize < 4 or vsize % 2 or vtable + vsize > self.size:
            self.fail(f"table at {pos} has a damaged vtable")
        return _Table(self, pos, vtable, (vsize - 4) // 2, self._unpack("<H", vtable + 2))


class _Table:
    def __init__(self, r: _Reader, pos: int, vtable: int, nfields: int, inline_size: int):
        self.r, self.pos, self.vtable, self.nfields, self.inline_size = r, pos, vtable, nfields, inline_size

    def _field(self, i: int) -> int | None:
        if i >= self.nfields:
            return None
        off = self.r._unpack("<H", self.vtable + 4 + 2 * i)
        if off == 0:
            return None
        if off >= self.inline_size:
            self.r.fail(f"field {i} of the table at {self.pos} lies outside the table")
        return self.pos + off

    def scalar(self, i: int, fmt: str, default):
        p = self._field(i)
        return default if p is None else self.r._unpack(fmt, p)

    def _target(self, i: int) -> int | None:
        p = self._field(i)
        return None if p is None else p + self.r.u32(p)

    def table(self, i: int) -> _Table | None:
        t = self._target(i)
        return None if t is None else self.r.table(t)

    def vector(self, i: int, item_bytes: int) -> tuple[int, int]:
        """(start of the elements, element count); (0, 0) when absent."""
        t = self._target(i)
        if t is None:
            return 0, 0
        n = self.r.u32(t)
        start = t + 4
        if start + n * item_bytes > self.r.size:
            self.r.fail(f"a vector of {n} elements at {t} runs past the end of the file")
        return start, n

    def numbers(self, i: int, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        start, n = self.vector(i, size)
        return struct.unpack_from(f"<{n}{fmt}", self.r.buf, start) if n else ()

    def tables(self, i: int) -> list[_Table]:
        start, n = self.vector(i, 4)
        return [self.r.table(start + 4 * k + self.r.u32(start + 4 * k)) for k in range(n)]

    def string(self, i: int) -> str:
        start, n = self.vector(i, 1)
        return bytes(self.r.buf[start:start + n]).decode("utf-8", errors="replace")


def read(tflite: bytes) -> TFLiteModel:
    """The buffers and tensors of a TFLite flatbuffer; TFLiteFileError if it is not one."""
    buf = bytes(tflite)
    if len(buf) < 8 or buf[4:8] != IDENTIFIER:
        raise TFLiteFileError("not a TFLite file (no TFL3 identifier)")
    r = _Reader(buf)
    model = r.table(r.u32(0))
    out = TFLiteModel(version=model.scalar(_MODEL_VERSION, "<I", 0))
    for k, b in enumerate(model.tables(_MODEL_BUFFERS)):
        start, n = b.vector(_BUFFER_DATA, 1)
        offset = b.scalar(_BUFFER_OFFSET, "<Q", 0)
        if n == 0 and offset > 1:  # large models keep buffer data after the flatbuffer
            size = b.scalar(_BUFFER_SIZE, "<Q", 0)
            if offset + size > len(buf):
                r.fail(f"buffer {k} ({size} bytes at {offset}) runs past the end of the file")
            start, n = offset, size
        out.buffers.append(BufferInfo(k, start, n))
    codes = []
    for oc in model.tables(_MODEL_OPCODES):
        deprecated = oc.scalar(_OPCODE_DEPRECATED, "<b", 0)
        builtin = oc.scalar(_OPCODE_BUILTIN, "<i", 0)
        custom = oc._field(_OPCODE_CUSTOM) is not None
        codes.append(-1 if custom else max(deprecated, builtin))
    for g, sub in enumerate(model.tables(_MODEL_SUBGRAPHS)):
        for o_index, op in enumerate(sub.tables(_SUBGRAPH_OPERATORS)):
            code = op.scalar(_OPERATOR_OPCODE, "<I", 0)
            if code >= len(codes):
                r.fail(f"operator {o_index} names operator code {code} of {len(codes)}")
            out.operators.append(OperatorInfo(g, o_index, codes[code], tuple(op.numbers(_OPERATOR_INPUTS, "i")),
                                              tuple(op.numbers(_OPERATOR_OUTPUTS, "i"))))
        for t_index, t in enumerate(sub.tables(_SUBGRAPH_TENSORS)):
            q = t.table(_TENSOR_QUANT)
            out.tensors.append(TensorInfo(
                subgraph=g,
                index=t_index,
                name=t.string(_TENSOR_NAME),
                shape=tuple(t.numbers(_TENSOR_SHAPE, "i")),
                type=t.scalar(_TENSOR_TYPE, "<b", 0),
                buffer=t.scalar(_TENSOR_BUFFER, "<I", 0),
                scale=tuple(q.numbers(_QUANT_SCALE, "f")) if q else (),
                zero_point=tuple(q.numbers(_QUANT_ZERO_POINT, "q")) if q else (),
                quantized_dimension=q.scalar(_QUANT_DIMENSION, "<i", 0) if q else 0,
            ))
    return out
