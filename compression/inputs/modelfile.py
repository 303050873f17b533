"""The one inspector of Keras model files: read and judge a config without TensorFlow.

The engine's loader (engine/models.py), the dashboard's upload check (studio/uploads.py)
and the command line all call ``inspect`` before anything is deserialised, so a file is
judged the same way wherever it comes from:

- its cost is bounded first: the config's size is read from the zip header or the HDF5
  attribute before the config itself, its nesting depth is counted before ``json.loads``
  runs, and the weights it declares (zip members, HDF5 datasets) are summed from metadata;
- every object anywhere in the config is visited (wrappers, nested models, cells,
  initializers), iteratively, and refused when it carries code (Lambda and its relatives,
  serialised functions), is a custom or unknown class, or is a layer the TFLite converter
  cannot export (recurrent layers).

TensorFlow-free: h5py, NumPy and the standard library only.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from compression.inputs import limits
from compression.errors import ModelLoadError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
MAX_ZIP_MEMBERS = 1000

# Layers whose config carries Python code that deserialising would run.
CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}
# Serialised objects (Keras 3) that are Python code or a reference to a Python function.
CODE_OBJECTS = {"__lambda__", "function"}
# Keys only a code-carrying config has.
CODE_KEYS = {"function_type", "output_shape_type"}

MODEL_CLASSES = {"Sequential", "Functional", "Model"}

# Standard layers a model may hold. Keep in step with what the engine can prune, cluster,
# quantize and export; the Keras 3 graph conversion reads this list too.
STANDARD_LAYERS = {
    "InputLayer",
    # weights
    "Dense", "EinsumDense", "Embedding",
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    # pooling
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
    # shape
    "Flatten", "Reshape", "Permute", "RepeatVector",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
    # regularisation and normalisation
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization",
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "Rescaling", "Normalization",
    # activations
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU", "Identity",
    # merging
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    # wrappers (what they wrap is checked like any layer)
    "TimeDistributed",
}

# Keras layers the TFLite export cannot handle here (recurrent state); refused up front.
NOT_EXPORTABLE = {
    "LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
    "LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells", "CuDNNLSTM", "CuDNNGRU",
    "LSTMV1", "GRUV1",
}

# Objects that live inside layer configs.
STANDARD_OBJECTS = {
    # initializers
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity", "LecunNormal",
    "LecunUniform", "Ones", "Orthogonal", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "Zeros", "IdentityInitializer", "OrthogonalInitializer",
    # regularizers and constraints
    "L1", "L2", "L1L2", "OrthogonalRegularizer",
    "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "RadialConstraint",
    # dtype policies and Keras 3's serialisation markers
    "Policy", "DTypePolicy", "FloatDTypePolicy", "__keras_tensor__", "__tuple__",
}

# Parts of a saved config that loading with compile=False never deserialises: only code is refused there.
NOT_DESERIALISED = {"compile_config", "training_config"}


def _file_error(path: Path, message: str) -> ModelLoadError:
    return ModelLoadError(f"{path.name}: {message}")


def _loads_config(raw: bytes | str, path: Path, what: str):
    try:
        return limits.loads(raw, f"{path.name}: the {what}", limits.MAX_CONFIG_BYTES, limits.MAX_CONFIG_DEPTH)
    except limits.LimitError as e:
        raise ModelLoadError(str(e)) from None
    except ValueError:  # not JSON
        raise ModelLoadError(f"{path.name} has an unreadable {what}") from None


def _read_keras_zip(path: Path) -> tuple[dict, str]:
    weights_cap = limits.max_model_bytes()
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                raise _file_error(path, f"the archive has {len(infos)} entries; a Keras file has a handful")
            for info in infos:
                cap = limits.MAX_CONFIG_BYTES if info.filename.endswith(".json") else weights_cap
                limits.check_zip_member(info, path.name, cap)
            names = {i.filename for i in infos}
            if "config.json" not in names:
                raise ModelLoadError(f"{path.name} is not a Keras model file (no config.json inside)")
            raw = limits.read_zip_member(z, "config.json", path.name, limits.MAX_CONFIG_BYTES)
            meta_raw = limits.read_zip_member(z, "metadata.json", path.name, limits.MB) if "metadata.json" in names else b"{}"
    except limits.LimitError as e:
        raise ModelLoadError(str(e)) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError):
        raise ModelLoadError(f"{path.name} is not a valid .keras file (not a zip archive); is it corrupt?") from None
    config = _loads_config(raw, path, "config.json")
    meta = _loads_config(meta_raw, path, "metadata.json")
    version = meta.get("keras_version", "") if isinstance(meta, dict) else ""
    return config, str(version)


def _read_h5(path: Path) -> tuple[dict, str]:
    import h5py

    weights_cap = limits.max_model_bytes()
    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ModelLoadError(f"{path.name} holds weights only (no model config); save the whole model")
            size = f.attrs.get_id("model_config").get_storage_size()
            if size > limits.MAX_CONFIG_BYTES:
                raise ModelLoadError(f"{path.name}: the model config is {limits.human(size)}; "
                                     f"at most {limits.human(limits.MAX_CONFIG_BYTES)} is accepted")
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", "")
            declared = [0]

            def count(_name, obj):
                if isinstance(obj, h5py.Dataset):
                    declared[0] += int(obj.size) * int(obj.dtype.itemsize)

            f.visititems(count)
    except ModelLoadError:
        raise
    except Exception:  # h5py's many ways of saying "damaged" (OSError, KeyError, RuntimeError, ValueError ...)
        raise ModelLoadError(f"{path.name} is a damaged HDF5 file, not a valid HDF5 (.h5) model; is it corrupt?") from None
    if declared[0] > weights_cap:
        raise ModelLoadError(f"{path.name} declares {limits.human(declared[0])} of weights; "
                             f"at most {limits.human(weights_cap)} is accepted")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    if not isinstance(raw, (bytes, str)):
        raise ModelLoadError(f"{path.name} has an unreadable model config")
    return _loads_config(raw, path, "model config"), str(version)


def read_config(path: Path) -> tuple[dict, str]:
    """The model's config and the Keras version that wrote it, read within bounds, deserialising nothing."""
    path = Path(path)
    if path.suffix.lower() == ".keras":
        config, version = _read_keras_zip(path)
    else:
        config, version = _read_h5(path)
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path.name}: the model configuration is not a Keras model")
    return config, version


def _layer_name(node: dict) -> str | None:
    cfg = node.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    return name if isinstance(name, str) else None


def check_config(config: dict, name: str) -> list[str]:
    """Refuse code, custom classes and layers that cannot be exported; return the layer classes.

    Walks every object in the config (no recursion), whatever holds it: ``layer``,
    ``layers``, ``cell``, ``forward_layer``, nested models, initializers and so on.
    """
    if not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES:
        found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ModelLoadError(
            f"{name} holds a {found!r}; only Sequential and functional models can be loaded"
        )
    layer_classes: list[str] = []
    custom: str | None = None
    unexportable: str | None = None
    # (node, name of the layer that holds it, inside a part that is never deserialised)
    stack: list[tuple[object, str | None, bool]] = [(config, None, False)]
    while stack:
        node, holder, inert = stack.pop()
        if isinstance(node, list):
            stack.extend((v, holder, inert) for v in reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        here = holder
        if isinstance(cls, str):
            lname = _layer_name(node)
            where = f" ({lname}{', inside ' + holder if holder else ''})" if lname else (
                f" (inside {holder})" if holder else "")
            # Outside the model proper (compile_config), a function is only a name never looked up.
            code = cls in CODE_LAYERS or cls == "__lambda__" or (cls in CODE_OBJECTS and not inert)
            if code or CODE_KEYS & node.keys():
                what = (f"a {cls} layer" if cls in CODE_LAYERS else
                        f"a serialised Python {cls.strip('_')}" if cls in CODE_OBJECTS else
                        f"a {cls} layer carrying a serialised Python function")
                raise ModelLoadError(
                    f"{name} has {what}{where}, which holds Python code; "
                    "loading never runs code from a file: replace it with standard layers"
                )
            if not inert:
                module = node.get("module")
                registered = node.get("registered_name")
                foreign = (module is not None and (not isinstance(module, str)
                                                   or module.split(".")[0] not in ("keras", "tf_keras"))) or \
                    registered not in (None, cls)
                if cls in NOT_EXPORTABLE and not foreign:
                    unexportable = unexportable or f"{cls}{where}"
                elif foreign or cls not in (STANDARD_LAYERS | MODEL_CLASSES | STANDARD_OBJECTS):
                    label = registered if isinstance(registered, str) and registered else cls
                    custom = custom or f"{label!r}{where}"
                if cls in STANDARD_LAYERS or cls in MODEL_CLASSES or cls in NOT_EXPORTABLE:
                    layer_classes.append(cls)
                    if lname and node is not config:
                        here = lname
        elif CODE_KEYS & node.keys():
            inside = f" (inside {holder})" if holder else ""
            raise ModelLoadError(f"{name} has a serialised Python function{inside}, which holds Python code; "
                                 "loading never runs code from a file: replace it with standard layers")
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                stack.append((value, here, inert or key in NOT_DESERIALISED))
    if custom:
        raise ModelLoadError(
            f"{name} has a custom layer {custom}; only standard Keras layers can be loaded"
        )
    if unexportable:
        raise ModelLoadError(
            f"{name} has a recurrent layer {unexportable}, which cannot be exported to TFLite here; "
            "use feed-forward layers (Dense, Conv, pooling)"
        )
    return layer_classes


def inspect(path: str | Path) -> dict:
    """Read and judge a model file: {'keras_version', 'class_name', 'layers': [class names]}.

    Raises ModelLoadError with one line; nothing from the file is deserialised or run.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelLoadError(f"{path.name}: only .keras and .h5 model files can be loaded")
    config, version = read_config(path)
    check_config(config, path.name)
    return {"keras_version": version, "class_name": config.get("class_name"),
            "layers": [layer.get("class_name") for layer in layer_configs(config)]}


def layer_configs(config: dict) -> list[dict]:
    """Every layer config of a model and of the models nested in it (no recursion)."""
    out: list[dict] = []
    stack = [config]
    while stack:
        model = stack.pop()
        inner = model.get("config") if isinstance(model, dict) else None
        found = inner.get("layers") if isinstance(inner, dict) else None
        for layer in found if isinstance(found, list) else []:
            if isinstance(layer, dict):
                out.append(layer)
                if layer.get("class_name") in MODEL_CLASSES:
                    stack.append(layer)
    return out
