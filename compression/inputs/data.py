"""Datasets by name, offline first, and a user's own .npz.

Lookup order for the registry's downloadable sets: the folder named by
COMPRESSION_DATA_DIR, keras' cache (~/.keras/datasets), Debian's /usr/share/datasets,
and only then keras' download. With no file and no network the error says where to
put the file. ``digits`` (scikit-learn's 8x8 handwritten digits) ships with
scikit-learn and always works offline.

Every dataset comes back the same way: float32 images in [0, 1] (or the user's own
floats), int64 labels, a fixed validation split carved from the training data, and the
untouched test split.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from compression.errors import DatasetError, ModelLoadError
from compression.inputs.npzfile import NPZ_KEYS, dtype_problem, inspect_npz

VALIDATION_FRACTION = 0.1
SPLIT_SEED = 1234  # the validation split never depends on the model's seed
MAX_CLASSES = 1000

FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def info(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "n_train": int(len(self.x_train)),
            "n_val": int(len(self.x_val)),
            "n_test": int(len(self.x_test)),
            "class_names": list(self.class_names),
        }

    def reshaped(self, sample_shape: tuple[int, ...]) -> "Dataset":
        """The same data laid out as ``sample_shape`` (784 vs 28x28 vs 28x28x1)."""
        shape = tuple(sample_shape)
        if shape == self.input_shape:
            return self
        if int(np.prod(shape)) != int(np.prod(self.input_shape)):
            raise DatasetError(
                f"the model expects inputs of shape {list(shape)} but the dataset's samples are "
                f"{list(self.input_shape)}; they hold different numbers of values"
            )
        return replace(
            self,
            x_train=self.x_train.reshape((-1, *shape)),
            x_val=self.x_val.reshape((-1, *shape)),
            x_test=self.x_test.reshape((-1, *shape)),
        )

    def limited(self, max_train_samples: int | None) -> "Dataset":
        """At most ``max_train_samples`` training samples (validation shrinks in proportion)."""
        if not max_train_samples or max_train_samples >= len(self.x_train):
            return self
        n_val = max(1, min(len(self.x_val), int(round(max_train_samples * VALIDATION_FRACTION))))
        return replace(
            self,
            x_train=self.x_train[:max_train_samples],
            y_train=self.y_train[:max_train_samples],
            x_val=self.x_val[:n_val],
            y_val=self.y_val[:n_val],
        )

    def times(self, factor: float) -> "Dataset":
        """The same data with every sample multiplied by ``factor`` (e.g. back to raw pixel values)."""
        return replace(self, x_train=(self.x_train * factor).astype(np.float32),
                       x_val=(self.x_val * factor).astype(np.float32), x_test=(self.x_test * factor).astype(np.float32))

    def with_channel_axis(self) -> "Dataset":
        """Images of shape (H, W) get a channel axis, as Conv2D needs."""
        if len(self.input_shape) == 2:
            return self.reshaped((*self.input_shape, 1))
        return self

    def display_images(self, index: np.ndarray) -> np.ndarray:
        """Test images as uint8 for a gallery: (k, H, W) or (k, H, W, 3)."""
        x = self.x_test[index]
        if x.ndim == 2:  # flat vectors: show square images when they are square
            side = int(round(np.sqrt(x.shape[1])))
            if side * side == x.shape[1]:
                x = x.reshape((-1, side, side))
            else:
                x = x.reshape((len(x), 1, -1))
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        lo, hi = float(np.min(x)) if x.size else 0.0, float(np.max(x)) if x.size else 1.0
        scale = hi - lo if hi > lo else 1.0
        return np.clip((x - lo) / scale * 255.0, 0, 255).astype(np.uint8)


# --- splitting and normalising ---------------------------------------------------------


def _to_float(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return (x.astype(np.float32) / 255.0)
    return x.astype(np.float32)


def _labels(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).reshape(-1).astype(np.int64)


def make_dataset(name, x_train, y_train, x_test, y_test, class_names=None, num_classes=None) -> Dataset:
    x_train, x_test = _to_float(np.asarray(x_train)), _to_float(np.asarray(x_test))
    y_train, y_test = _labels(y_train), _labels(y_test)
    num_classes = int(num_classes or (max(y_train.max(), y_test.max()) + 1))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x_train))
    n_val = max(1, int(round(len(x_train) * VALIDATION_FRACTION)))
    val, train = order[:n_val], order[n_val:]
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    return Dataset(name, x_train[train], y_train[train], x_train[val], y_train[val],
                   x_test, y_test, num_classes, names)


# --- where files live -------------------------------------------------------------------


def search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("COMPRESSION_DATA_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    dirs.append(keras_home / "datasets")
    dirs.append(Path("/usr/share/datasets"))
    return dirs


def _missing(name: str, wanted: str) -> DatasetError:
    where = ", ".join(str(d) for d in search_dirs())
    return DatasetError(
        f"dataset {name!r} is not on this machine and could not be downloaded: put {wanted} in the "
        f"folder named by COMPRESSION_DATA_DIR (looked in: {where})"
    )


def _offline() -> bool:
    return os.environ.get("COMPRESSION_OFFLINE", "") not in ("", "0", "false")


_downloader = None  # set by the engine (compression.engine.download): keras' own loaders need TensorFlow


def set_downloader(fn) -> None:
    """``fn(loader_name) -> ((x_train, y_train), (x_test, y_test))``: the last resort of the loaders
    above, for a process that has TensorFlow (the engine registers keras' own download)."""
    global _downloader
    _downloader = fn


def _download(loader_name: str):
    """keras' own loader, as the last resort. Any failure means: not available."""
    if _offline() or _downloader is None:
        raise OSError("offline, or no downloader in this process")
    return _downloader(loader_name)


def _read_idx_gz(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist() -> Dataset:
    for d in search_dirs():
        for p in (d / "mnist.npz", d / "mnist" / "mnist.npz"):
            if p.is_file():
                with np.load(p, allow_pickle=False) as f:
                    return make_dataset("mnist", f["x_train"], f["y_train"], f["x_test"], f["y_test"])
    try:
        (xtr, ytr), (xte, yte) = _download("mnist")
    except Exception:
        raise _missing("mnist", "mnist.npz (keys x_train, y_train, x_test, y_test)") from None
    return make_dataset("mnist", xtr, ytr, xte, yte)


def load_fashion_mnist() -> Dataset:
    for d in search_dirs():
        folder = d / "fashion-mnist"
        if all((folder / f).is_file() for f in FASHION_FILES.values()):
            arrays = {k: _read_idx_gz(folder / f) for k, f in FASHION_FILES.items()}
            return make_dataset("fashion_mnist", arrays["x_train"], arrays["y_train"],
                                arrays["x_test"], arrays["y_test"], FASHION_CLASSES)
    try:
        (xtr, ytr), (xte, yte) = _download("fashion_mnist")
    except Exception:
        raise _missing("fashion_mnist", "fashion-mnist/ with the four official idx .gz files") from None
    return make_dataset("fashion_mnist", xtr, ytr, xte, yte, FASHION_CLASSES)


def _read_cifar_batches(folder: Path):
    def batch(name):
        with open(folder / name, "rb") as f:
            # The official python batches are pickles; only load them from the trusted data folders.
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape((-1, 3, 32, 32)).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"])

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = batch("test_batch")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xte, yte


def load_cifar10() -> Dataset:
    for d in search_dirs():
        folder = d / "cifar-10-batches-py"
        if (folder / "test_batch").is_file():
            return make_dataset("cifar10", *_read_cifar_batches(folder), CIFAR_CLASSES)
        if (d / "cifar10.npz").is_file():
            with np.load(d / "cifar10.npz", allow_pickle=False) as f:
                return make_dataset("cifar10", f["x_train"], f["y_train"], f["x_test"], f["y_test"], CIFAR_CLASSES)
    try:
        (xtr, ytr), (xte, yte) = _download("cifar10")
    except Exception:
        raise _missing("cifar10", "cifar-10-batches-py/ (the official python version) or cifar10.npz") from None
    return make_dataset("cifar10", xtr, ytr, xte, yte, CIFAR_CLASSES)


# What the loaders divide raw pixel values by (the input contract of a trained baseline).
RAW_SCALE = {"digits": 16.0, "mnist": 255.0, "fashion_mnist": 255.0, "cifar10": 255.0}


def load_digits() -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images / 16.0).astype(np.float32)  # pixel values 0..16
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return make_dataset("digits", x[train], y[train], x[test], y[test])


# dataset name -> loader; compression.recipe.choices.DatasetName lists the same names (a test holds them equal)
LOADERS = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}


# --- a user's own data -------------------------------------------------------------------


def validate_arrays(arrays: dict[str, np.ndarray], source: str = "the file") -> None:
    """Raise DatasetError naming the first problem with a user's arrays."""
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise DatasetError(f"{source} lacks {', '.join(missing)}; it needs the keys {', '.join(NPZ_KEYS)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        for key, a in ((f"x_{split}", x), (f"y_{split}", y)):
            problem = dtype_problem(key, a.dtype)
            if problem:
                raise DatasetError(problem)
        if x.ndim < 2 or x.ndim > 4:
            raise DatasetError(
                f"x_{split} has shape {list(x.shape)}; expected (samples, features), (samples, H, W) or (samples, H, W, C)"
            )
        if len(x) == 0:
            raise DatasetError(f"x_{split} has no samples")
        if 0 in x.shape[1:]:
            raise DatasetError(f"x_{split} has shape {list(x.shape)}: its samples hold no values; "
                               "each sample needs at least one feature")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.ndim != 1:
            raise DatasetError(
                f"y_{split} has shape {list(y.shape)}; expected one integer label per sample (not one-hot)"
            )
        if len(x) != len(y):
            raise DatasetError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DatasetError(f"x_{split} contains NaN or infinite values")
        if y.dtype.kind == "f":
            if not np.isfinite(y).all() or not np.all(y == np.round(y)):
                raise DatasetError(f"y_{split} holds non-integer labels; labels must be whole numbers 0..K-1")
        if y.min() < 0:
            raise DatasetError(f"y_{split} has the label {int(y.min())}; labels must be 0..K-1")
        if y.max() >= MAX_CLASSES:
            raise DatasetError(f"y_{split} has the label {int(y.max())}; at most {MAX_CLASSES} classes")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DatasetError(
            f"x_train samples have shape {list(arrays['x_train'].shape[1:])} but x_test samples have "
            f"{list(arrays['x_test'].shape[1:])}"
        )
    if len(np.unique(arrays["y_train"])) < 2:
        raise DatasetError("y_train holds a single class; classification needs at least two")
    if len(arrays["x_train"]) < 10:
        raise DatasetError(f"x_train has {len(arrays['x_train'])} samples; at least 10 are needed")


def load_npz(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist")
    inspect_npz(path)  # bounded: nothing is loaded unless the headers pass
    try:
        # allow_pickle=False: an .npz may not run code when it is read.
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in NPZ_KEYS}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DatasetError(f"{path.name} holds Python objects (pickles), which are refused; save plain arrays") from None
        raise DatasetError(f"{path.name} is not a readable .npz file: {str(e).splitlines()[0][:200]}") from None
    except Exception as e:  # zipfile.BadZipFile, OSError, EOFError ...
        raise DatasetError(f"{path.name} is not a readable .npz file ({type(e).__name__})") from None
    validate_arrays(arrays, path.name)
    return make_dataset(path.stem, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def load(spec) -> Dataset:
    """A dataset from a recipe's DatasetSpec, a registry name, or an .npz path."""
    if isinstance(spec, str):  # a name (a DatasetName is a str too) or an .npz path
        if spec.lower().endswith(".npz"):
            return load_npz(spec)
        if str(spec) not in LOADERS:
            raise DatasetError(f"{str(spec)!r} is not a dataset; known: {', '.join(LOADERS)}, or an .npz file")
        return LOADERS[str(spec)]()
    if spec.npz:
        return load_npz(spec.npz)
    return LOADERS[str(spec.name)]()


# --- fitting samples to a model's input ------------------------------------------------------------
# One definition for the engine (when a run adapts a dataset to a loaded model), "Try it" and anything
# else that feeds samples to the exported file: a spec says what was done, adapt_samples does it.


def _dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def adaptation(have: tuple[int, ...], sample: tuple[int, ...], source: str = "the model",
               dataset: str = "the dataset") -> dict:
    """How samples of shape ``have`` are fitted to a model input of shape ``sample``.

    {"kind": "none" | "reshape" | "pad" | "resize", "from": have, "to": sample, "sentence": ...}, plus
    "pad": [top, left] for padding and "channels": [in, out]. Same number of values: laid out anew.
    Images of another size: zero-padded (centred) when they are no larger than the model's input,
    else resized bilinearly; one channel is copied to three. Anything else: ModelLoadError.
    """
    have, sample = tuple(int(d) for d in have), tuple(int(d) for d in sample)
    spec = {"from": list(have), "to": list(sample)}
    if have == sample:
        return {**spec, "kind": "none",
                "sentence": f"none: the dataset's samples already have the model's input shape {_dims(sample)}"}
    if int(np.prod(have)) == int(np.prod(sample)):
        return {**spec, "kind": "reshape", "sentence": f"the dataset's {_dims(have)} samples were laid out as "
                                                        f"{_dims(sample)} (the same values, reshaped)"}
    images = len(have) in (2, 3) and len(sample) == 3
    channels_in = 1 if len(have) == 2 else (have[2] if images else None)
    if not images or channels_in not in (1, sample[2]):
        raise ModelLoadError(
            f"{source} does not fit dataset {dataset!r}: it expects inputs of shape {_dims(sample)}, the samples are "
            f"{_dims(have)}; only images can be adapted (padded or resized, one channel copied to three)")
    H, W, C = sample
    h, w = have[:2]
    parts = []
    if h <= H and w <= W:
        top, left = (H - h) // 2, (W - w) // 2
        spec.update(kind="pad", pad=[top, left])
        parts.append(f"zero-padded to {H}x{W} ({top} pixels above, {H - h - top} below, {left} left, "
                     f"{W - w - left} right)")
    else:
        spec.update(kind="resize")
        parts.append(f"resized to {H}x{W} (bilinear)")
    spec["channels"] = [channels_in, C]
    if channels_in != C:
        parts.append(f"their single channel copied to {C} channels")
    spec["sentence"] = (f"the dataset's {_dims(have)} images were {' and '.join(parts)} to fit the model's input "
                        f"{_dims(sample)}; a device must do the same before calling the file")
    return spec


def resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resizing of (n, h, w, c) images with half-pixel centres and no antialiasing, as
    ``tf.image.resize(..., "bilinear")`` does (checked against it in the tests)."""
    x = np.asarray(x, dtype=np.float32)
    n, h, w, c = x.shape

    def grid(out: int, size: int):
        src = (np.arange(out, dtype=np.float64) + 0.5) * (size / out) - 0.5
        low = np.floor(src)
        frac = (src - low).astype(np.float32)
        lo = np.clip(low, 0, size - 1).astype(int)
        hi = np.clip(np.ceil(src), 0, size - 1).astype(int)
        return lo, hi, frac

    y0, y1, fy = grid(height, h)
    x0, x1, fx = grid(width, w)
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bottom = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return (top * (1 - fy)[None, :, None, None] + bottom * fy[None, :, None, None]).astype(np.float32)


def adapt_samples(x: np.ndarray, spec: dict | None) -> np.ndarray:
    """Samples fitted to a model's input as ``spec`` (from ``adaptation``) says; unchanged without one."""
    x = np.asarray(x, dtype=np.float32)
    if not spec or spec.get("kind") in (None, "none"):
        return x
    to = tuple(int(d) for d in spec["to"])
    if spec["kind"] == "reshape":
        return x.reshape((len(x), *to))
    H, W, C = to
    h, w = (int(d) for d in spec["from"][:2])
    cin = int(spec.get("channels", [1, C])[0])
    x = x.reshape((len(x), h, w, cin))
    out = np.zeros((len(x), H, W, C), dtype=np.float32)
    for start in range(0, len(x), 2048):
        chunk = x[start:start + 2048]
        if spec["kind"] == "pad":
            top, left = (int(v) for v in spec["pad"])
            block = np.zeros((len(chunk), H, W, cin), dtype=np.float32)
            block[:, top:top + h, left:left + w, :] = chunk
        else:
            block = resize_bilinear(chunk, H, W)
        out[start:start + len(chunk)] = block if cin == C else np.repeat(block, C, axis=-1)
    return out
