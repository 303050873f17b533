"""Bounds on what a user's input may cost us, checked before the input is parsed or loaded.

Every reader of user input (recipes, model configs, dataset archives) asks here first, so
a hostile file is refused with one line instead of filling memory or blowing the stack.
Standard library and NumPy only.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

from compression.errors import UserError

MB = 1024 * 1024

MAX_RECIPE_BYTES = 1 * MB
MAX_RECIPE_DEPTH = 32
MAX_CONFIG_BYTES = 16 * MB  # a model's config.json / model_config attribute
MAX_CONFIG_DEPTH = 200  # Keras 3 functional configs nest ~8 levels per nested model
MAX_INT_DIGITS = 30  # no honest number in a recipe or config is longer
MAX_ZIP_RATIO = 200  # uncompressed / compressed, for members large enough to matter
RATIO_FLOOR_BYTES = 8 * MB  # members smaller than this may compress as well as they like
DATASET_BYTES_ENV = "COMPRESSION_MAX_DATASET_BYTES"
DEFAULT_MAX_DATASET_BYTES = 512 * MB
MODEL_BYTES_ENV = "COMPRESSION_MAX_MODEL_BYTES"
DEFAULT_MAX_MODEL_BYTES = 1024 * MB


class LimitError(UserError):
    """An input is larger, deeper or stranger than any honest one."""


def _env_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def max_dataset_bytes() -> int:
    """Memory a dataset may take once loaded (bytes); ``$COMPRESSION_MAX_DATASET_BYTES``."""
    return _env_bytes(DATASET_BYTES_ENV, DEFAULT_MAX_DATASET_BYTES)


def max_model_bytes() -> int:
    """Weights a model file may declare (bytes); ``$COMPRESSION_MAX_MODEL_BYTES``."""
    return _env_bytes(MODEL_BYTES_ENV, DEFAULT_MAX_MODEL_BYTES)


def human(n: int) -> str:
    if n >= 1024 * MB:
        return f"{n / (1024 * MB):.1f} GB"
    if n >= MB:
        return f"{n / MB:.0f} MB"
    return f"{n:,} bytes"


# --- JSON ----------------------------------------------------------------------------------

# A JSON string literal: quotes with anything but a quote or backslash inside, or escapes.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def json_depth(raw: bytes) -> int:
    """How deeply the brackets of a JSON text nest, counted without parsing (no recursion)."""
    import numpy as np

    bare = _STRING.sub(b"", raw)
    codes = np.frombuffer(bare, dtype=np.uint8)
    step = np.zeros(len(codes), dtype=np.int32)
    step[(codes == ord("[")) | (codes == ord("{"))] = 1
    step[(codes == ord("]")) | (codes == ord("}"))] = -1
    return int(np.cumsum(step).max()) if len(step) else 0


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise LimitError(f"holds a number with {digits} digits; numbers may have at most {MAX_INT_DIGITS}")
    return int(text)


def _parse_constant(name: str):
    raise LimitError(f"holds {name}, which is not a number JSON allows")


def loads(raw: bytes | str, what: str, max_bytes: int, max_depth: int):
    """``json.loads`` with the size, nesting depth and number length bounded first.

    Raises LimitError (one line naming ``what``) for anything past the bounds, and
    ValueError (json.JSONDecodeError) for text that is not JSON, as json.loads does.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise LimitError(f"{what} is {human(len(raw))}; at most {human(max_bytes)} is accepted")
    depth = json_depth(raw)
    if depth > max_depth:
        raise LimitError(f"{what} nests {depth} levels deep; at most {max_depth} are accepted")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LimitError(f"{what} is not UTF-8 text") from None
    try:
        return json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)
    except LimitError as e:
        raise LimitError(f"{what} {e}") from None


# --- zip archives (.keras, .npz) -----------------------------------------------------------------


def check_zip_member(info: zipfile.ZipInfo, archive: str, max_bytes: int) -> None:
    """Refuse a member that declares more than ``max_bytes`` or expands like a zip bomb."""
    if info.file_size > max_bytes:
        raise LimitError(f"{archive}: {info.filename} unpacks to {human(info.file_size)}; "
                         f"at most {human(max_bytes)} is accepted")
    if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_ZIP_RATIO * max(1, info.compress_size):
        raise LimitError(f"{archive}: refused, {info.filename} expands {info.file_size // max(1, info.compress_size)}x "
                         f"({human(info.compress_size)} to {human(info.file_size)}); a zip bomb?")


def read_zip_member(z: zipfile.ZipFile, name: str, archive: str, max_bytes: int) -> bytes:
    """A member's bytes, its declared size checked before anything is read."""
    info = z.getinfo(name)
    check_zip_member(info, archive, max_bytes)
    with z.open(info) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LimitError(f"{archive}: {name} is larger than it declares; refused")
    return data
