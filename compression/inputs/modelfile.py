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

import contextlib
import shutil
import tempfile
import zipfile
from pathlib import Path

from compression.inputs import limits
from compression.errors import ModelLoadError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
MAX_ZIP_MEMBERS = 1000
MAX_H5_OBJECTS = 10_000  # groups and datasets in a model's HDF5 weights; a ResNet-50 has about 1,500
WEIGHTS_MEMBER = "model.weights.h5"
SPOOL_BYTES = 64 * 1024 * 1024  # a .keras weights member larger than this is inspected from a temporary file

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


def check_h5_weights(f, name: str) -> int:
    """Judge an open HDF5 file's objects before any array is read; returns the bytes its datasets declare.

    Bounded first: each group's member count is read (one call) and summed before its members are
    looked at, so a file holding more than MAX_H5_OBJECTS objects is refused without walking them.
    Then every dataset: its declared size (shape x item size) is summed against the weights cap, and
    set against what the file stores for it: a dataset declaring far more than it stores (gzip-chunked
    zeros, chunks never written) is a decompression bomb. Links to other files, datasets stored in
    external files and virtual datasets are refused: reading them would read files the user never gave.
    """
    import h5py

    cap = limits.max_model_bytes()
    total = objects = 0
    groups = [("", f.id)]
    while groups:
        prefix, gid = groups.pop()
        objects += gid.get_num_objs()
        if objects > MAX_H5_OBJECTS:
            raise ModelLoadError(f"{name} holds more than {MAX_H5_OBJECTS:,} HDF5 objects; a Keras model's weights "
                                 "need a few hundred")
        members: list[bytes] = []
        gid.links.iterate(lambda member: members.append(member))  # returns None: the walk goes on
        for member in members:
            path = f"{prefix}/{member.decode('utf-8', 'replace')}"
            kind = gid.links.get_info(member).type
            if kind == h5py.h5l.TYPE_EXTERNAL:
                raise ModelLoadError(f"{name}: refused, {path!r} links to another file; a model file must hold its "
                                     "own weights")
            if kind != h5py.h5l.TYPE_HARD:
                continue  # a soft link names an object visited under its own name
            oid = h5py.h5o.open(gid, member)
            if isinstance(oid, h5py.h5g.GroupID):
                groups.append((path, oid))
                continue
            if not isinstance(oid, h5py.h5d.DatasetID):
                continue
            plist = oid.get_create_plist()
            if plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count():
                raise ModelLoadError(f"{name}: refused, the dataset {path!r} takes its values from other files")
            count = 1
            for d in oid.shape:
                count *= int(d)
            declared = count * int(oid.get_type().get_size())
            total += declared
            if total > cap:
                raise ModelLoadError(f"{name} declares {limits.human(total)} of weights; at most {limits.human(cap)} "
                                     "is accepted")
            stored = int(oid.get_storage_size())
            if declared > max(limits.RATIO_FLOOR_BYTES, limits.MAX_ZIP_RATIO * stored):
                raise ModelLoadError(f"{name}: refused, the weights {path!r} declare {limits.human(declared)} but the "
                                     f"file stores {limits.human(stored)} of them; a decompression bomb?")
    return total


@contextlib.contextmanager
def keras_weights(z: zipfile.ZipFile, name: str):
    """The weights member of an open .keras archive as an open h5py File (None when there is none),
    its objects judged by ``check_h5_weights`` before the caller reads anything. A small member is read
    into memory, a large one through a temporary file; its size was checked against the caps already."""
    import h5py

    if WEIGHTS_MEMBER not in z.namelist():
        yield None
        return
    info = z.getinfo(WEIGHTS_MEMBER)
    limits.check_zip_member(info, name, limits.max_model_bytes())
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buf:
        with z.open(info) as src:
            shutil.copyfileobj(src, buf, 1024 * 1024)
        buf.seek(0)
        try:
            h5 = h5py.File(buf, "r")
        except Exception:
            raise ModelLoadError(f"{name}: its {WEIGHTS_MEMBER} is not a readable HDF5 file; is it corrupt?") from None
        try:
            check_h5_weights(h5, name)
            yield h5
        finally:
            h5.close()


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
    except (limits.LimitError, ModelLoadError) as e:
        raise ModelLoadError(str(e)) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError):
        raise ModelLoadError(f"{path.name} is not a valid .keras file (not a zip archive); is it corrupt?") from None
    config = _loads_config(raw, path, "config.json")
    meta = _loads_config(meta_raw, path, "metadata.json")
    version = meta.get("keras_version", "") if isinstance(meta, dict) else ""
    return config, str(version)


def _read_h5(path: Path) -> tuple[dict, str]:
    import h5py

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
    except ModelLoadError:
        raise
    except Exception:  # h5py's many ways of saying "damaged" (OSError, KeyError, RuntimeError, ValueError ...)
        raise ModelLoadError(f"{path.name} is a damaged HDF5 file, not a valid HDF5 (.h5) model; is it corrupt?") from None
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    if not isinstance(raw, (bytes, str)):
        raise ModelLoadError(f"{path.name} has an unreadable model config")
    return _loads_config(raw, path, "model config"), str(version)


def check_weights(path: Path) -> int:
    """Judge a model file's weights (``check_h5_weights``) before anything reads them; returns the bytes
    they declare. For .keras, the weights member of the archive; for .h5, the file itself."""
    import h5py

    path = Path(path)
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as z, keras_weights(z, path.name) as h5:
                return 0 if h5 is None else check_h5_weights(h5, path.name)
        with h5py.File(path, "r") as f:
            return check_h5_weights(f, path.name)
    except limits.LimitError as e:
        raise ModelLoadError(str(e)) from None
    except ModelLoadError:
        raise
    except Exception:  # a damaged archive or HDF5 file
        raise ModelLoadError(f"{path.name}: its weights cannot be read (a damaged file?)") from None


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
    top = config.get("class_name") if isinstance(config, dict) else None
    if isinstance(config, dict) and "class_name" in config and not isinstance(top, str):
        raise ModelLoadError(f"{name}: the model's class_name is a {type(top).__name__}, not a class name; only "
                             "Sequential and functional models can be loaded")
    if not isinstance(top, str) or top not in MODEL_CLASSES:
        found = top if isinstance(top, str) else type(config).__name__
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
        if "class_name" in node and not isinstance(cls, str):
            inside = f" (inside {holder})" if holder else ""
            raise ModelLoadError(f"{name} has an object whose class_name is a {type(cls).__name__}, not a name{inside}; "
                                 "the config is damaged or was not written by Keras")
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
    check_weights(path)  # declared sizes against the cap and the stored bytes, before anything reads them
    inputs = input_names(config)
    if len(inputs) > 1:
        raise ModelLoadError(f"{path.name}: the model has {len(inputs)} inputs ({', '.join(inputs[:5])}); only "
                             "single-input classifiers can be compressed")
    return {"keras_version": version, "class_name": config.get("class_name"),
            "layers": [layer.get("class_name") for layer in layer_configs(config)]}


def input_names(config: dict) -> list[str]:
    """The inputs a model config declares, by name (a Sequential model has one)."""
    inner = config.get("config") if isinstance(config, dict) else None
    if config.get("class_name") == "Sequential" or not isinstance(inner, dict):
        return ["input"]
    found = inner.get("input_layers")
    if isinstance(found, dict):  # inputs by name
        return [str(k) for k in found]
    if isinstance(found, list) and found:
        # [["left", 0, 0], ["right", 0, 0]] for several; Keras 3 writes one input as ["in", 0, 0]
        if all(isinstance(x, list) for x in found):
            return [str(x[0]) if x else "?" for x in found]
        return [str(found[0])]
    return ["input"]


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
                if isinstance(layer.get("class_name"), str) and layer["class_name"] in MODEL_CLASSES:
                    stack.append(layer)
    return out
