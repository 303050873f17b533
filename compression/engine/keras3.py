"""Keras 3 model files as tf_keras models: any functional graph of standard layers.

Since TensorFlow 2.16 ``model.save("x.keras")`` writes a Keras 3 file, and tfmot can wrap
only tf_keras (Keras 2) models. This module rebuilds such a file as a tf_keras functional
model without running anything from it:

- the graph is read from config.json (or the .h5 ``model_config`` attribute), which the
  shared inspector (compression/modelfile.py) has already checked for code and custom
  classes; every layer is rebuilt from an allowlist of classes and config keys
  (``LAYERS``), and nested models (a backbone inside a model) are flattened into the
  outer graph;
- the weights are read with h5py from model.weights.h5 (or the .h5 file), by position
  within their layer, and checked against the rebuilt layer's shapes;
- SeparableConv2D is split into a DepthwiseConv2D (``<name>_depthwise``, no bias) and a
  1x1 Conv2D (``<name>``): the same function, and each part is a layer every method and
  every measurement knows;
- before the model is accepted, its outputs on sample inputs are compared with the
  outputs Keras 3 itself computes, in a subprocess without TF_USE_LEGACY_KERAS
  (``reference_outputs``); a disagreement beyond 1e-4 is refused naming the first layer
  whose output differs.

Anything else (an unsupported layer, several inputs or outputs, shared nested models) is
refused with one line naming the layer and its class.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tf_keras

from compression.errors import ModelLoadError
from compression.inputs import modelfile
from compression.inputs.modelfile import read_config

layers = tf_keras.layers

CONV = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation", "use_bias")
POOL = ("pool_size", "strides", "padding", "data_format")
GLOBAL_POOL = ("data_format", "keepdims")
MERGE: tuple[str, ...] = ()

# Keras 3 class -> the config keys carried over to its tf_keras twin (same name unless RENAMED).
LAYERS: dict[str, tuple[str, ...]] = {
    "Dense": ("units", "activation", "use_bias"),
    "Conv1D": CONV + ("groups",),
    "Conv2D": CONV + ("groups",),
    "Conv2DTranspose": CONV + ("output_padding",),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate",
                        "activation", "use_bias"),
    "SeparableConv2D": CONV + ("depth_multiplier",),  # split in two, see _separable
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "LayerNormalization": ("axis", "epsilon", "center", "scale"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "LeakyReLU": ("negative_slope",),
    "ELU": ("alpha",),
    "Activation": ("activation",),
    "Softmax": ("axis",),
    "Add": MERGE, "Subtract": MERGE, "Multiply": MERGE, "Average": MERGE, "Maximum": MERGE, "Minimum": MERGE,
    "Concatenate": ("axis",),
    "MaxPooling1D": POOL, "AveragePooling1D": POOL, "MaxPooling2D": POOL, "AveragePooling2D": POOL,
    "GlobalAveragePooling1D": GLOBAL_POOL, "GlobalMaxPooling1D": GLOBAL_POOL,
    "GlobalAveragePooling2D": GLOBAL_POOL, "GlobalMaxPooling2D": GLOBAL_POOL,
    "ZeroPadding2D": ("padding", "data_format"),
    "Cropping2D": ("cropping", "data_format"),
    "UpSampling2D": ("size", "data_format", "interpolation"),
    "Flatten": ("data_format",),
    "Reshape": ("target_shape",),
    "Permute": ("dims",),
    "Dropout": ("rate", "noise_shape", "seed"),
    "SpatialDropout2D": ("rate", "data_format", "seed"),
    "Rescaling": ("scale", "offset"),
    "Normalization": ("axis", "mean", "variance", "invert"),
}
# Keras 3 aliases of the same classes (older files).
ALIASES = {"MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D", "MaxPool1D": "MaxPooling1D",
           "AvgPool1D": "AveragePooling1D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
           "GlobalMaxPool2D": "GlobalMaxPooling2D", "GlobalAvgPool1D": "GlobalAveragePooling1D",
           "GlobalMaxPool1D": "GlobalMaxPooling1D"}
RENAMED = {("LeakyReLU", "negative_slope"): "alpha"}
# Config values that change what a layer computes and that tf_keras cannot express.
UNSUPPORTED_VALUES = {("LayerNormalization", "rms_scaling"): True, ("Dense", "lora_rank"): "any",
                      ("Conv2D", "lora_rank"): "any", ("BatchNormalization", "renorm"): True,
                      ("BatchNormalization", "synchronized"): True}
ACTIVATIONS = {"relu", "relu6", "sigmoid", "softmax", "tanh", "linear", "elu", "selu", "gelu", "swish", "silu",
               "softplus", "softsign", "hard_sigmoid", "exponential", "leaky_relu", "hard_swish", "mish"}
MODEL_CLASSES = ("Functional", "Sequential", "Model")
TOLERANCE = 1e-4
SAMPLES = 4


def supported_layers() -> list[str]:
    return sorted({"InputLayer", *LAYERS, *MODEL_CLASSES[:2]})


def _snake(name: str) -> str:
    """Keras 3's naming of a layer inside model.weights.h5 (keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


# --- weights ---------------------------------------------------------------------------------------------------


class _Weights:
    """The arrays of a Keras 3 file, looked up by where a layer sits in the model."""

    def __init__(self, path: Path):
        self.path = path
        self.keras_format = path.suffix.lower() == ".keras"
        self._h5 = None

    def __enter__(self):
        import contextlib

        import h5py

        # every dataset's declared size is judged (cap, stored bytes, links) before any array is read
        self._stack = contextlib.ExitStack()
        try:
            if self.keras_format:
                z = self._stack.enter_context(zipfile.ZipFile(self.path))
                self._h5 = self._stack.enter_context(modelfile.keras_weights(z, self.path.name))
            else:
                self._h5 = self._stack.enter_context(h5py.File(self.path, "r"))
                modelfile.check_h5_weights(self._h5, self.path.name)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def get(self, attr_path: tuple[str, ...], name_path: tuple[str, ...]) -> list[np.ndarray] | None:
        """``attr_path``: Keras 3's snake-case names from the top model down (.keras);
        ``name_path``: the layer names from the top model down (.h5)."""
        if self._h5 is None:
            return None
        if self.keras_format:
            key = "layers/" + "/layers/".join(attr_path) + "/vars"
            group = self._h5.get(key)
            if group is None:
                return None
            return [np.array(group[k]) for k in sorted(group, key=int)]
        mw = self._h5["model_weights"] if "model_weights" in self._h5 else self._h5
        group = mw.get(name_path[0])
        if group is None:
            return None
        leaf = name_path[-1]
        out = []
        for w in group.attrs.get("weight_names", []):
            w = w.decode() if isinstance(w, bytes) else str(w)
            # a top-level layer owns its whole group; a nested one the names with its own in the path
            if len(name_path) == 1 or leaf in w.split("/")[:-1]:
                out.append(np.array(group[w]))
        return out


# --- building ------------------------------------------------------------------------------------------------


class Converter:
    def __init__(self, file_name: str, weights: _Weights):
        self.file_name = file_name
        self.weights = weights
        self.used: set[str] = set()
        self.pending: list[tuple[object, list[np.ndarray], str]] = []  # (layer, arrays, label)
        self.origin: dict[str, str] = {}  # tf_keras layer name -> "name (Class)" in the file

    # errors
    def refuse(self, message: str) -> ModelLoadError:
        return ModelLoadError(f"{self.file_name}: {message}")

    def unique(self, name: str, prefix: str) -> str:
        out = name if name not in self.used else f"{prefix}_{name}" if prefix else name
        i = 1
        while out in self.used:
            out, i = f"{name}_{i}", i + 1
        self.used.add(out)
        return out

    # one layer
    def make_layer(self, cls: str, cfg: dict, name: str):
        kwargs = {"name": name}
        label = f"{cfg.get('name', name)} ({cls})"
        for (c, key), bad in UNSUPPORTED_VALUES.items():
            if c == cls and cfg.get(key) not in (None, False, 0) and (bad == "any" or cfg.get(key) == bad):
                raise self.refuse(f"layer {label} uses {key}={cfg.get(key)!r}, which Keras 2 cannot express")
        for key in LAYERS[cls]:
            value = cfg.get(key)
            if value is None:
                continue
            if isinstance(value, dict):
                raise self.refuse(f"layer {label} has a custom object in {key}, which cannot be converted")
            if key == "activation" and value not in ACTIVATIONS:
                raise self.refuse(f"layer {label} has an activation {value!r} that cannot be converted")
            if key in ("max_value", "negative_slope", "threshold", "alpha"):
                value = float(value)
            if key == "target_shape" or key == "dims":
                value = tuple(value)
            kwargs[RENAMED.get((cls, key), key)] = value
        if cls == "Normalization":
            for key in ("mean", "variance"):
                if key in kwargs:
                    kwargs[key] = np.asarray(kwargs[key], dtype=np.float32)
        try:
            return getattr(layers, cls)(**kwargs)
        except (TypeError, ValueError) as e:
            raise self.refuse(f"layer {label} could not be rebuilt: {str(e).splitlines()[0][:200]}") from None

    def call_leaf(self, lc: dict, cls: str, inputs, attr_path, name_path, prefix: str):
        cfg = lc.get("config", {})
        lname = cfg.get("name") or lc.get("name")
        arrays = self.weights.get(attr_path, name_path)
        if cls == "SeparableConv2D":
            return self._separable(cfg, lname, inputs, arrays, prefix)
        layer = self.make_layer(cls, cfg, self.unique(lname, prefix))
        self.origin[layer.name] = f"{lname} ({cls})"
        out = layer(inputs)
        self.pending.append((layer, arrays, f"{lname} ({cls})"))
        return out

    def _separable(self, cfg: dict, lname: str, inputs, arrays, prefix: str):
        label = f"{lname} ({'SeparableConv2D'})"
        name = self.unique(lname, prefix)
        dw = layers.DepthwiseConv2D(cfg["kernel_size"], strides=cfg.get("strides", 1), padding=cfg.get("padding", "valid"),
                                    depth_multiplier=cfg.get("depth_multiplier", 1),
                                    data_format=cfg.get("data_format"), dilation_rate=cfg.get("dilation_rate", 1),
                                    use_bias=False, name=self.unique(f"{name}_depthwise", prefix))
        activation = cfg.get("activation") or "linear"
        if activation not in ACTIVATIONS:
            raise self.refuse(f"layer {label} has an activation {activation!r} that cannot be converted")
        pw = layers.Conv2D(cfg["filters"], 1, data_format=cfg.get("data_format"), activation=activation,
                           use_bias=cfg.get("use_bias", True), name=name)
        self.origin[dw.name] = self.origin[pw.name] = label
        out = pw(dw(inputs))
        if arrays is None:
            arrays_dw = arrays_pw = None
        else:
            arrays_dw, arrays_pw = arrays[:1], arrays[1:]
        self.pending.append((dw, arrays_dw, label))
        self.pending.append((pw, arrays_pw, label))
        return out

    # graphs
    def build(self, config: dict):
        cls = config.get("class_name")
        if cls not in MODEL_CLASSES:
            raise self.refuse(f"holds a {cls!r}, not a Keras model")
        inputs = self._top_inputs(config)
        outputs = self.graph(config, inputs, (), (), "")
        model = tf_keras.Model(inputs, outputs[0], name=config.get("config", {}).get("name") or "model")
        self.assign()
        return model

    def _top_inputs(self, config: dict):
        inner = config.get("config", {})
        layer_cfgs = inner.get("layers", [])
        ins = [lc for lc in layer_cfgs if lc.get("class_name") == "InputLayer"]
        if config.get("class_name") == "Sequential":
            shape = None
            if ins:
                c = ins[0].get("config", {})
                shape = c.get("batch_shape") or c.get("batch_input_shape")
            shape = shape or inner.get("build_input_shape")
            if not shape and layer_cfgs:
                shape = (layer_cfgs[0].get("build_config") or {}).get("input_shape")
            if not shape:
                raise self.refuse("does not say its input shape")
            name = ins[0]["config"].get("name", "input") if ins else "input"
            self.used.add(name)
            return tf_keras.Input(shape=tuple(shape[1:]), name=name)
        declared = _tensor_refs(inner.get("input_layers"))
        out_refs = _tensor_refs(inner.get("output_layers"))
        if len(declared) != 1:
            names = ", ".join(r[0] for r in declared)
            raise self.refuse(f"the model has {len(declared)} inputs ({names}); only single-input classifiers "
                              "can be compressed")
        if len(out_refs) != 1:
            names = ", ".join(r[0] for r in out_refs)
            raise self.refuse(f"the model has {len(out_refs)} outputs ({names}); only single-output classifiers "
                              "can be compressed")
        lc = next((lc for lc in ins if (lc.get("config", {}).get("name") or lc.get("name")) == declared[0][0]), None)
        if lc is None:
            raise self.refuse(f"its input {declared[0][0]} is not an InputLayer")
        c = lc.get("config", {})
        shape = c.get("batch_shape") or c.get("batch_input_shape")
        if not shape:
            raise self.refuse(f"its input {declared[0][0]} has no shape")
        self.used.add(declared[0][0])
        return tf_keras.Input(shape=tuple(shape[1:]), name=declared[0][0])

    def graph(self, config: dict, inputs, attr_path: tuple, name_path: tuple, prefix: str) -> list:
        """Build a (possibly nested) model's layers on ``inputs``; return its output tensors."""
        cls = config.get("class_name")
        inner = config.get("config", {})
        layer_cfgs = [lc for lc in inner.get("layers", []) if isinstance(lc, dict)]
        attr_names = _attr_names(layer_cfgs)
        if cls == "Sequential":
            x = inputs
            for lc, attr in zip(layer_cfgs, attr_names):
                lcls = ALIASES.get(lc.get("class_name"), lc.get("class_name"))
                if lcls == "InputLayer":
                    continue
                lname = lc.get("config", {}).get("name") or lc.get("name")
                x = self.node(lc, lcls, x, attr_path + (attr,), name_path + (lname,), prefix)
            return [x]
        # Functional
        tensors: dict[tuple, object] = {}
        input_refs = _tensor_refs(inner.get("input_layers"))
        given = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if len(given) != len(input_refs):
            raise self.refuse(f"model {inner.get('name')} takes {len(input_refs)} inputs but is given {len(given)}")
        for ref, t in zip(input_refs, given):
            tensors[(ref[0], 0, 0)] = t
        todo = [(lc, attr) for lc, attr in zip(layer_cfgs, attr_names) if lc.get("class_name") != "InputLayer"]
        while todo:
            progress = False
            rest = []
            for lc, attr in todo:
                lname = lc.get("config", {}).get("name") or lc.get("name")
                lcls = ALIASES.get(lc.get("class_name"), lc.get("class_name"))
                nodes = lc.get("inbound_nodes") or []
                resolved = [_node_inputs(n) for n in nodes]
                if not all((r[0], r[1], r[2]) in tensors for refs, _ in resolved for r in refs):
                    rest.append((lc, attr))
                    continue
                if len(nodes) > 1 and lcls in MODEL_CLASSES:
                    raise self.refuse(f"the nested model {lname} is called {len(nodes)} times; shared nested "
                                      "models cannot be converted")
                for node_index, (refs, kwargs) in enumerate(resolved):
                    # mask=None and training=False are what a plain inference call passes
                    bad = {k: v for k, v in kwargs.items()
                           if v is not None and k != "mask" and not (k == "training" and v is False)}
                    if bad:
                        raise self.refuse(f"layer {lname} ({lcls}) is called with {', '.join(bad)}; "
                                          "only plain calls can be converted")
                    args = [tensors[(r[0], r[1], r[2])] for r in refs]
                    x = args if _is_list_call(nodes[node_index]) else args[0]
                    outs = self.node(lc, lcls, x, attr_path + (attr,), name_path + (lname,), prefix)
                    outs = outs if isinstance(outs, list) else [outs]
                    for k, t in enumerate(outs):
                        tensors[(lname, node_index, k)] = t
                progress = True
            if not progress:
                names = ", ".join(lc.get("config", {}).get("name", "?") for lc, _ in rest[:5])
                raise self.refuse(f"the layers {names} take inputs the model never computes")
            todo = rest
        outs = []
        for ref in _tensor_refs(inner.get("output_layers")):
            key = (ref[0], ref[1], ref[2])
            if key not in tensors:
                raise self.refuse(f"its output {ref[0]} is not computed by any layer")
            outs.append(tensors[key])
        return outs

    def node(self, lc: dict, cls: str, x, attr_path, name_path, prefix: str):
        lname = lc.get("config", {}).get("name") or lc.get("name")
        if cls in MODEL_CLASSES:
            outs = self.graph(lc, x, attr_path, name_path, lname)
            if len(outs) != 1:
                raise self.refuse(f"the nested model {lname} has {len(outs)} outputs; only one can be converted")
            return outs[0]
        if cls not in LAYERS:
            raise self.refuse(f"layer {lname} ({cls}) cannot be converted to Keras 2; supported layers: "
                              f"{', '.join(supported_layers())}")
        return self.call_leaf(lc, cls, x, attr_path, name_path, prefix)

    def assign(self) -> None:
        for layer, arrays, label in self.pending:
            expected = [tuple(w.shape) for w in layer.get_weights()]
            if not expected:
                continue
            got = [] if arrays is None else arrays
            if layer.__class__.__name__ == "Normalization" and len(got) == len(expected) + 1:
                got = got[:len(expected)]
            if [tuple(a.shape) for a in got] != expected:
                raise self.refuse(f"the weights of layer {label} do not match its config "
                                  f"(found {[list(a.shape) for a in got]}, expected {[list(s) for s in expected]})")
            layer.set_weights(got)


def _tensor_refs(value) -> list[tuple]:
    """input_layers / output_layers: ["name", 0, 0] or [["name", 0, 0], ...]."""
    if not value:
        return []
    if isinstance(value[0], str):
        return [tuple(value)]
    return [tuple(v) for v in value]


def _node_inputs(node) -> tuple[list[tuple], dict]:
    """The (layer, node, tensor) references a call consumes, and its keyword arguments."""
    refs: list[tuple] = []
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        stack = list(node.get("args", []))
        kwargs = node.get("kwargs", {}) or {}
    else:  # Keras 2 style [[name, node, tensor, kwargs], ...]
        stack, kwargs = [], {}
        for item in node:
            refs.append((item[0], item[1], item[2]))
        return refs, kwargs
    while stack:
        item = stack.pop(0)
        if isinstance(item, list):
            stack[:0] = item
        elif isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
            h = item["config"]["keras_history"]
            refs.append((h[0], h[1], h[2]))
    return refs, {k: v for k, v in kwargs.items()}


def _is_list_call(node) -> bool:
    if isinstance(node, dict):
        args = node.get("args", [])
        return len(args) == 1 and isinstance(args[0], list) or len(args) > 1
    return len(node) > 1


def _attr_names(layer_cfgs: list[dict]) -> list[str]:
    """Keras 3 stores each layer's weights under its class name in snake case, numbered per name."""
    counts: dict[str, int] = {}
    out = []
    for lc in layer_cfgs:
        base = _snake(str(lc.get("class_name", "")))
        if base in counts:
            counts[base] += 1
            out.append(f"{base}_{counts[base]}")
        else:
            counts[base] = 0
            out.append(base)
    return out


# --- checking against Keras 3 ---------------------------------------------------------------------------------

_REFERENCE = r"""
import os, sys
import numpy as np
import keras
model_path, x_path, out_path, per_layer = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
x = np.load(x_path)
if per_layer:
    named = [l for l in model.layers if l.__class__.__name__ != "InputLayer"]
    probe = keras.Model(model.inputs, [l.output for l in named])
    outs = probe.predict(x, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    np.savez(out_path, **{l.name: np.asarray(o) for l, o in zip(named, outs)})
else:
    np.save(out_path, np.asarray(model.predict(x, verbose=0)))
"""


def reference_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update({"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
    return env


def reference_outputs(path: Path, x: np.ndarray, per_layer: bool = False, timeout_s: float = 900.0):
    """What Keras 3 computes for ``x`` (or, per_layer, every top-level layer's output by name)."""
    with tempfile.TemporaryDirectory() as tmp:
        x_path, out_path = Path(tmp) / "x.npy", Path(tmp) / ("out.npz" if per_layer else "out.npy")
        np.save(x_path, x)
        try:
            proc = subprocess.run([sys.executable, "-c", _REFERENCE, str(path.resolve()), str(x_path), str(out_path),
                                   "1" if per_layer else "0"], env=reference_env(), cwd=tmp,
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ModelLoadError(f"{path.name}: Keras 3 did not compute the reference outputs within "
                                 f"{timeout_s:.0f} s, so the conversion cannot be checked") from None
        if proc.returncode != 0 or not out_path.exists():
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            last = lines[-1][:300] if lines else f"exit code {proc.returncode}"
            raise ModelLoadError(f"{path.name}: Keras 3 could not run the model to check the conversion: {last}")
        if per_layer:
            with np.load(out_path) as z:
                return {k: z[k] for k in z.files}
        return np.load(out_path)


def sample_inputs_of(shape, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """Uniform [0, 1) samples, the same on every call (the check's inputs)."""
    return np.random.default_rng(seed).random((n, *tuple(shape))).astype(np.float32)


def sample_inputs(model, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    return sample_inputs_of(model.input_shape[1:], n, seed)


def _differs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)) /
                        (1.0 + np.abs(b.astype(np.float64))))) if a.size else 0.0


def verify(model, path: Path, converter: Converter | None = None) -> float:
    """The largest difference between the converted model and Keras 3 on sample inputs;
    refuse the model, naming the first differing layer, beyond TOLERANCE."""
    x = sample_inputs(model)
    expected = reference_outputs(path, x)
    got = model.predict(x, verbose=0)
    diff = _differs(np.asarray(got), np.asarray(expected))
    if diff <= TOLERANCE:
        return diff
    culprit = _first_differing_layer(model, path, x, converter)
    raise ModelLoadError(f"{path.name}: the converted model's outputs differ from Keras 3's by {diff:.2g} "
                         f"(allowed {TOLERANCE:g}), first at layer {culprit}; it cannot be converted faithfully")


def _first_differing_layer(model, path: Path, x: np.ndarray, converter: Converter | None) -> str:
    try:
        reference = reference_outputs(path, x, per_layer=True)
    except ModelLoadError:
        return "(unknown)"
    names = [layer.name for layer in model.layers if layer.name in reference]
    probe = tf_keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = probe.predict(x, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    for name, out in zip(names, outs):
        if _differs(np.asarray(out), reference[name]) > TOLERANCE:
            return converter.origin.get(name, name) if converter else name
    # the difference is inside a nested model, whose layers are not separately named in the reference
    nested = [n for n in reference if n not in names]
    return f"{nested[0]} (a nested model)" if nested else "(unknown)"


def convert(path: str | Path, check: bool = True):
    """A Keras 3 .keras or .h5 file as a tf_keras model, checked against Keras 3 (see module doc)."""
    path = Path(path)
    config, _version = read_config(path)
    with _Weights(path) as weights:
        converter = Converter(path.name, weights)
        model = converter.build(config)
    if check:
        verify(model, path, converter)
    return model


__all__ = ["LAYERS", "TOLERANCE", "Converter", "convert", "reference_outputs", "supported_layers", "verify"]
