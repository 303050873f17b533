"""An independent reader of TFLite files for the tests: LiteRT's own op and tensor details.

The studio reads files with its own FlatBuffers reader (compression.tflite); figures checked
against this reader are checked against the runtime that executes the file, not against the
code that made them.
"""

from __future__ import annotations

import numpy as np

WEIGHT_OPS = {"FULLY_CONNECTED": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "TRANSPOSE_CONV": 1}


def litert_kernels(tflite: bytes) -> list[dict]:
    """Every weight operator's kernel as LiteRT sees it, in operator order: {"op", "name", "values"
    (stored), "float" (dequantized with LiteRT's own scales), "dtype", "per_channel_axis"}."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=bytes(tflite))
    ops = interp._get_ops_details()
    # the file's own quantization, read before allocation: preparing the ops may expand a per-tensor
    # scale into one copy per channel
    details = {d["index"]: d for d in interp.get_tensor_details()}
    interp.allocate_tensors()
    producer = {int(o): op for op in ops for o in op["outputs"]}
    out, seen = [], set()
    for op in ops:
        slot = WEIGHT_OPS.get(op["op_name"])
        if slot is None:
            continue
        index = int(op["inputs"][slot])
        maker = producer.get(index)
        if maker is not None and maker["op_name"] == "DEQUANTIZE":
            index = int(maker["inputs"][0])
        if index in seen:
            continue
        seen.add(index)
        d = details[index]
        values = np.array(interp.get_tensor(index))
        q = d["quantization_parameters"]
        scales, zeros = np.asarray(q["scales"], dtype=np.float64), np.asarray(q["zero_points"], dtype=np.float64)
        axis = int(q["quantized_dimension"]) if scales.size > 1 else None
        if scales.size and values.dtype in (np.int8, np.uint8):
            shape = [1] * values.ndim
            if axis is not None:
                shape[axis] = -1
            as_float = (values.astype(np.float64) - zeros.reshape(shape)) * scales.reshape(shape)
        else:
            as_float = values.astype(np.float64)
        out.append({"op": op["op_name"], "name": d["name"], "values": values, "float": as_float,
                    "dtype": values.dtype, "per_channel_axis": axis})
    return out


def distinct_per_channel(values: np.ndarray, axis: int | None) -> int:
    if axis is None:
        return int(np.unique(values).size)
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    return int(max(np.unique(row).size for row in moved))
