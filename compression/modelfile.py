"""Reading a Keras model file's config without TensorFlow and without deserialising anything.

Both the engine's loader (models.py) and the dashboard's upload check (uploads.py) read
files through here, so a file is judged the same way before TensorFlow ever sees it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from compression.errors import ModelLoadError

# Layers whose config carries Python code that deserialising would run.
CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}


def read_config(path: Path) -> tuple[dict, str]:
    """The model's config and the Keras version that wrote it, read without deserialising."""
    suffix = path.suffix.lower()
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                if "config.json" not in names:
                    raise ModelLoadError(f"{path.name} is not a Keras model file (no config.json inside)")
                config = json.loads(z.read("config.json"))
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
        except zipfile.BadZipFile:
            raise ModelLoadError(f"{path.name} is not a valid .keras file (not a zip archive); is it corrupt?") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelLoadError(f"{path.name} has an unreadable config.json") from None
        return config, str(meta.get("keras_version", "") if isinstance(meta, dict) else "")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", "")
    except (OSError, KeyError, RuntimeError, ValueError):  # h5py's ways of saying "damaged"
        raise ModelLoadError(f"{path.name} is a damaged HDF5 file, not a valid HDF5 (.h5) model; is it corrupt?") from None
    if raw is None:
        raise ModelLoadError(f"{path.name} holds weights only (no model config); save the whole model")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    if isinstance(version, bytes):
        version = version.decode("utf-8")
    try:
        return json.loads(raw), str(version)
    except json.JSONDecodeError:
        raise ModelLoadError(f"{path.name} has an unreadable model config") from None


def layer_configs(config: dict) -> list[dict]:
    """Every layer config, nested models included."""
    out = []
    for layer in config.get("config", {}).get("layers", []) or []:
        out.append(layer)
        if layer.get("class_name") in ("Sequential", "Functional", "Model"):
            out.extend(layer_configs(layer))
    return out
