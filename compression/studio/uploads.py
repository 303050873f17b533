"""Checking and storing user uploads (models, datasets) without TensorFlow.

An upload is written to a private temporary folder, checked there, and only moved into
``$COMPRESSION_HOME/uploads/<kind>/<hash>/<name>`` when every check passed; a failed
check raises ``UploadError`` with one readable line and leaves the workspace untouched.

The checks here are structural and cheap (zip/HDF5 layout, JSON config, array shapes),
and refuse what a safe loader refuses (Lambda layers run arbitrary Python). The engine's
full check (loading the model with TensorFlow) runs in a subprocess (``deep_check``) so
the dashboard process never imports TensorFlow; the job repeats it anyway.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from compression.errors import DatasetError, ModelLoadError, UserError
from compression.inputs.modelfile import check_config, check_weights, input_names, read_config
from compression.inputs.npzfile import inspect_npz
from compression.inputs.paths import user_path
from compression.store.workspace import home_dir

MB = 1024 * 1024
MAX_MODEL_BYTES = 100 * MB
MAX_NPZ_BYTES = 200 * MB
MAX_UNZIPPED_FACTOR = 20  # a .keras archive may expand at most 20x (zip bombs)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class UploadError(UserError):
    pass


MAX_NAME_CHARS = 100


def safe_name(filename: str) -> str:
    """A file name safe to store: ASCII letters, digits, ``._-``, at most 100 characters, and always
    the suffix it came with ("модель.keras" -> "upload.keras"; a 300-character name keeps its ".h5")."""
    import unicodedata

    name = Path(str(filename).replace("\\", "/")).name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    suffix = re.sub(r"[^A-Za-z0-9]+", "", suffix)[:12]
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-") or "upload"
    stem = stem[:MAX_NAME_CHARS - len(suffix) - 1].rstrip("._-") or "upload"
    return f"{stem}.{suffix}" if suffix else stem


def _check_config(config: dict, name: str) -> dict:
    """The shared inspector's verdict (compression.modelfile), under the uploaded name."""
    try:
        check_config(config, name)
    except ModelLoadError as e:
        raise UploadError(str(e)) from None
    inputs = input_names(config)
    if len(inputs) > 1:  # the job would refuse it: say so at the upload
        raise UploadError(f"{name}: the model has {len(inputs)} inputs ({', '.join(inputs[:5])}); only "
                          "single-input classifiers can be compressed")
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return {"model_class": config.get("class_name"), "layers": len(layers) if isinstance(layers, list) else None}


def _size_within(path: Path, name: str, limit: int, what: str) -> int:
    size = path.stat().st_size
    if size > limit:
        raise UploadError(f"{name} is {size / MB:.0f} MB; the limit for {what} is {limit // MB} MB")
    return size


def _config(path: Path, name: str) -> tuple[dict, str]:
    """The engine's own TensorFlow-free reader, with its message under the uploaded name."""
    try:
        return read_config(path)
    except ModelLoadError as e:
        raise UploadError(str(e).replace(path.name, name, 1)) from None


def check_model_file(path: str | Path, name: str | None = None) -> dict:
    """Structural check of a .keras or .h5 file. Returns a small info dict, raises UploadError."""
    path = Path(path)
    name = name or path.name
    size = _size_within(path, name, MAX_MODEL_BYTES, "a model")
    if size == 0:
        raise UploadError(f"{name} is empty")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise UploadError(f"{name} is not a Keras model file (a .keras file is a zip archive; this one is not)")
        try:
            with zipfile.ZipFile(path) as z:
                infos = z.infolist()
                names = {i.filename for i in infos}
                bad = [n for n in names if n.startswith(("/", "\\")) or ".." in Path(n).parts]
                if bad:
                    raise UploadError(f"{name}: refused, the archive has an unsafe entry {bad[0]!r}")
                if sum(i.file_size for i in infos) > MAX_UNZIPPED_FACTOR * max(size, MB):
                    raise UploadError(f"{name}: refused, the archive expands to far more than its size (zip bomb?)")
                if "config.json" not in names:
                    raise UploadError(f"{name} is not a Keras model file: it has no config.json")
                if not any(n.endswith((".h5", ".weights.h5", ".npz")) for n in names):
                    raise UploadError(f"{name} has no weights (model.weights.h5 is missing)")
        except UploadError:
            raise
        except (zipfile.BadZipFile, ValueError, UnicodeDecodeError, OSError, KeyError) as e:
            raise UploadError(f"{name} is a damaged Keras file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    elif suffix in (".h5", ".hdf5"):
        with open(path, "rb") as f:
            if f.read(8) != HDF5_SIGNATURE:
                raise UploadError(f"{name} is not an HDF5 file, so not a Keras .h5 model")
    else:
        raise UploadError(f"{name}: a model must be a .keras or .h5 file")
    config, version = _config(path, name)
    info = _check_config(config, name)
    try:
        check_weights(path)  # every dataset's declared size, before anything reads it; object count bounded
    except ModelLoadError as e:
        raise UploadError(str(e).replace(path.name, name, 1)) from None
    info.update(format="keras" if suffix == ".keras" else "h5", keras_version=version or None)
    return info


def check_npz(path: str | Path, name: str | None = None) -> dict:
    """A dataset .npz: x_train, y_train, x_test, y_test; numeric images, integer labels."""
    path = Path(path)
    name = name or path.name
    _size_within(path, name, MAX_NPZ_BYTES, "a dataset")
    if path.suffix.lower() != ".npz":
        raise UploadError(f"{name}: a dataset must be an .npz file")
    try:
        inspect_npz(path, name)  # keys, dtypes and the memory it would take, from the headers alone
    except DatasetError as e:
        raise UploadError(str(e)) from None
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [k for k in NPZ_KEYS if k not in keys]
            if missing:
                raise UploadError(f"{name} lacks {', '.join(missing)}; a dataset .npz needs the arrays "
                                  f"{', '.join(NPZ_KEYS)} (it has: {', '.join(sorted(keys)) or 'nothing'})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except UploadError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise UploadError(f"{name}: refused, it holds Python objects (pickles); store plain numeric arrays") from None
        raise UploadError(f"{name} is not a readable .npz file: {str(e).splitlines()[0]}") from None
    except Exception as e:
        raise UploadError(f"{name} is not a readable .npz file ({type(e).__name__})") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype.kind not in "uif" or x.ndim not in (2, 3, 4):
            raise UploadError(f"{name}: x_{split} must be numeric with 2 to 4 dimensions (samples first); "
                              f"it is {x.dtype} with shape {x.shape}")
        if 0 in x.shape[1:]:
            raise UploadError(f"{name}: x_{split} has shape {list(x.shape)}: its samples hold no values; "
                              "each sample needs at least one feature")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.dtype.kind not in "uif":
            raise UploadError(f"{name}: y_{split} must be a 1-D array of class numbers; it has shape {y.shape}")
        if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            raise UploadError(f"{name}: y_{split} holds fractions; labels must be whole class numbers")
        if len(x) != len(y):
            raise UploadError(f"{name}: x_{split} has {len(x)} samples but y_{split} has {len(y)}")
        if len(x) == 0:
            raise UploadError(f"{name}: x_{split} is empty")
        if y.min() < 0:
            raise UploadError(f"{name}: y_{split} has negative labels")
        arrays[f"y_{split}"] = y
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise UploadError(f"{name}: train samples have shape {arrays['x_train'].shape[1:]} "
                          f"but test samples {arrays['x_test'].shape[1:]}")
    classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    if classes < 2 or classes > 1000:
        raise UploadError(f"{name}: needs between 2 and 1000 classes; labels say {classes}")
    return {"n_train": int(len(arrays["x_train"])), "n_test": int(len(arrays["x_test"])),
            "input_shape": list(arrays["x_train"].shape[1:]), "num_classes": classes}


def deep_check(path: str | Path, kind: str, timeout: float = 180) -> str | None:
    """Run the engine's own check (TensorFlow) in a subprocess. Returns an error line or None.

    Skipped (None) when the engine is not installed or COMPRESSION_UPLOAD_DEEP_CHECK=0;
    the job runs the same check again before it trains anything.
    """
    if os.environ.get("COMPRESSION_UPLOAD_DEEP_CHECK", "1") == "0":
        return None
    module = "compression.engine.models" if kind == "model" else "compression.inputs.data"
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        proc = subprocess.run([sys.executable, "-m", "compression.studio.upload_check", kind, str(path)],
                              capture_output=True, text=True, timeout=timeout,
                              cwd=str(Path(__file__).resolve().parents[2]))  # the project root
    except subprocess.TimeoutExpired:
        return f"checking {Path(path).name} took longer than {timeout:.0f} s; it is refused"
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        return None if answer.get("ok") else str(answer.get("error") or "the file was refused")
    return None if proc.returncode == 0 else f"the check of {Path(path).name} crashed; it is refused"


def save_upload(source: bytes | BinaryIO, filename: str, kind: str, home: str | Path | None = None,
                deep: bool = True) -> tuple[Path, dict]:
    """Check an upload and store it in the workspace. Returns (stored path, info).

    kind is "model" or "dataset". Raises UploadError; on any error nothing is left behind.
    """
    if kind not in ("model", "dataset"):
        raise ValueError(kind)
    name = safe_name(filename)
    limit = MAX_MODEL_BYTES if kind == "model" else MAX_NPZ_BYTES
    tmp = Path(tempfile.mkdtemp(prefix="upload-"))
    try:
        staged = tmp / name
        digest = hashlib.sha256()
        written = 0
        with open(staged, "wb") as out:
            if isinstance(source, (bytes, bytearray, memoryview)):
                chunks = [bytes(source)]
            else:
                chunks = iter(lambda: source.read(MB), b"")
            for chunk in chunks:
                written += len(chunk)
                if written > limit:
                    raise UploadError(f"{name} is larger than the {limit // MB} MB limit for a {kind}")
                digest.update(chunk)
                out.write(chunk)
        info = check_model_file(staged, name) if kind == "model" else check_npz(staged, name)
        if deep:
            error = deep_check(staged, kind)
            if error:
                raise UploadError(error if name in error else f"{name}: {error}")
        final_dir = home_dir(home, create=False) / "uploads" / ("models" if kind == "model" else "datasets") / digest.hexdigest()[:16]
        final = final_dir / name
        if not final.exists():
            final_dir.mkdir(parents=True, exist_ok=True)
            part = final_dir / (name + ".part")
            shutil.copyfile(staged, part)
            os.replace(part, final)
        return final, info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def list_uploads(kind: str, home: str | Path | None = None) -> list[Path]:
    folder = home_dir(home, create=False) / "uploads" / ("models" if kind == "model" else "datasets")
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*/*") if p.is_file() and not p.name.endswith(".part")]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


RECIPE_KEY = re.compile(r"^[0-9a-f]{16}$")


def save_recipe(recipe, home: str | Path | None = None) -> str:
    """Keep a recipe uploaded on the Pipeline page in ``$COMPRESSION_HOME/uploads/recipes/<key>.json`` (its paths
    already confined); returns the key the page puts in its URL, so that a reload loads it again."""
    text = json.dumps(recipe.to_dict(), indent=2, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = home_dir(home, create=False) / "uploads" / "recipes"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{key}.json"
    if not final.exists():
        part = folder / f".{key}.{os.getpid()}.part"
        part.write_text(text, encoding="utf-8")
        os.replace(part, final)
    return key


def load_saved_recipe(key: str, home: str | Path | None = None):
    """A recipe ``save_recipe`` kept, checked again (it may only name workspace files); UploadError otherwise."""
    from compression.recipe import Recipe

    if not isinstance(key, str) or not RECIPE_KEY.match(key):
        raise UploadError(f"{key!r} is not the key of an uploaded recipe")
    path = home_dir(home, create=False) / "uploads" / "recipes" / f"{key}.json"
    try:
        recipe = Recipe.load(path)
    except UserError:
        raise UploadError(f"no uploaded recipe {key} in this workspace") from None
    return confine_recipe_paths(recipe, home)


def confine_recipe_paths(recipe, home: str | Path | None = None):
    """A recipe from the browser may only name files in the workspace's uploads and runs folders.

    Returns the recipe with those paths made absolute (symlinks and ``..`` resolved), or
    raises UploadError with one line. The command line does not call this: there the user
    may name any file they can read.
    """
    from dataclasses import replace

    root = Path(os.path.realpath(home_dir(home, create=False)))
    allowed = [root / "uploads", root / "runs"]

    def confined(value: str | None, field: str) -> str | None:
        if value is None:
            return None
        try:
            given = user_path(value, field)  # ~nosuchuser, NUL, too long: one line
        except UserError as e:
            raise UploadError(str(e)) from None
        real = Path(os.path.realpath(given if given.is_absolute() else root / given))
        if not any(real == a or real.is_relative_to(a) for a in allowed):
            raise UploadError(
                f"{field}: {value!r} is outside the workspace; a recipe uploaded here may only name files "
                f"under {allowed[0]} or {allowed[1]} (upload the file on the Baseline page, or use the command line)"
            )
        return str(real)

    if recipe.baseline.path is not None:
        recipe = replace(recipe, baseline=replace(recipe.baseline, path=confined(recipe.baseline.path, "baseline.path")))
    if recipe.dataset.npz is not None:
        recipe = replace(recipe, dataset=replace(recipe.dataset, npz=confined(recipe.dataset.npz, "dataset.npz")))
    return recipe
