"""Reading a dataset archive (.npz) within bounds, from its headers alone, without loading it.

Both the engine's loader (compression/data.py) and the dashboard's upload check
(studio/uploads.py) call ``inspect_npz`` before ``numpy.load`` touches any array, so an
archive that would fill memory is refused in milliseconds. NumPy and the standard library only.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from compression.inputs import limits
from compression.errors import DatasetError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def dtype_problem(key: str, dtype: np.dtype) -> str | None:
    """What is wrong with an array's element type, in words, or None."""
    label = key.startswith("y")
    if dtype.hasobject:
        if label:
            return f"{key} holds Python objects, not numbers; labels must be integers 0..K-1"
        return f"{key} holds Python objects (pickles), which are refused; save plain numeric arrays"
    if label:
        if dtype.kind == "b":
            return f"{key} holds true/false values; labels must be integers 0..K-1, one class number per sample"
        if dtype.kind in "USV":
            return f"{key} holds text ({dtype}); labels must be integers 0..K-1: map each class name to a number"
        if dtype.kind not in "iuf":
            return f"{key} has dtype {dtype}; labels must be integers 0..K-1"
    elif dtype.kind not in "uif":
        return f"{key} has dtype {dtype}; it must hold numbers (uint8 or float)"
    return None


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(f)
    else:
        raise ValueError(f"npy format version {version[0]}.{version[1]} is not supported; save with numpy.savez")
    return tuple(int(d) for d in shape), dtype


def inspect_npz(path: str | Path, source: str | None = None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of a dataset archive's arrays, read from their headers alone.

    Refuses, before any array is loaded: missing keys, members that are not arrays,
    pickled objects, label arrays that cannot be labels, archives that expand like zip
    bombs, and data that would take more than ``limits.max_dataset_bytes()`` in memory
    once converted (float32 samples, int64 labels).
    """
    path = Path(path)
    source = source or path.name
    cap = limits.max_dataset_bytes()
    found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            members = {i.filename: i for i in z.infolist()}
            keys = sorted(n[:-4] if n.endswith(".npy") else n for n in members)
            missing = [k for k in NPZ_KEYS if f"{k}.npy" not in members and k not in members]
            if missing:
                raise DatasetError(f"{source} lacks {', '.join(missing)}; it needs the keys {', '.join(NPZ_KEYS)} "
                                   f"(it has: {', '.join(keys[:10]) or 'nothing'})")
            for key in NPZ_KEYS:
                info = members.get(f"{key}.npy")
                if info is None:
                    raise DatasetError(f"{source}: {key} is not a NumPy array (no {key}.npy inside)")
                limits.check_zip_member(info, source, cap)
                with z.open(info) as f:
                    shape, dtype = _npy_header(f)
                if any(d < 0 for d in shape):
                    raise DatasetError(f"{source}: {key}.npy declares the shape {list(shape)}; a dimension cannot "
                                       "be negative (a damaged or forged header)")
                problem = dtype_problem(key, dtype)
                if problem:
                    raise DatasetError(f"{source}: {problem}")
                found[key] = (shape, dtype)
    except (DatasetError, limits.LimitError) as e:
        raise DatasetError(str(e)) from None
    except Exception as e:  # zipfile.BadZipFile, OSError, EOFError, ValueError from a bad header ...
        detail = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DatasetError(f"{source} is not a readable .npz file ({detail})") from None
    cost = 0
    for key, (shape, dtype) in found.items():
        count = int(np.prod(shape, dtype=object))  # exact, whatever the header claims
        cost += count * (8 if key.startswith("y") else max(4, dtype.itemsize))
    if cost > cap:
        raise DatasetError(
            f"{source} unpacks to {limits.human(cost)} of arrays (as float32 samples and int64 labels); "
            f"at most {limits.human(cap)} is accepted (set {limits.DATASET_BYTES_ENV} to change this)"
        )
    return found
