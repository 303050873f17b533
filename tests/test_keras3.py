"""Keras 3 files of any standard graph: converted to tf_keras, checked against Keras 3, compressed.

The Keras 3 models are built, saved and run by Keras 3 itself, once, in a subprocess
without TF_USE_LEGACY_KERAS (the ``keras`` package TensorFlow installs; nothing from the
network). That subprocess also records Keras 3's outputs on the converter's sample inputs,
so most tests compare against them without paying for another Keras 3 process; one test
runs the real check (models.load_model) end to end.
"""

import json
import os
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tf_keras

from conftest import make_arrays, tiny_recipe
from compression.inputs import data
from compression.engine import keras3, models
from compression.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[1]

BUILD = r"""
import json, sys
import numpy as np
import keras
from keras import layers as L

out = sys.argv[1]
made = {}

def resnet():
    inp = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp)
    x = L.BatchNormalization(epsilon=0.5, name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    for i, (filters, stride) in enumerate([(8, 1), (16, 2)]):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"b{i}_conv1")(x)
        y = L.BatchNormalization(name=f"b{i}_bn1")(y)
        y = L.Activation("relu", name=f"b{i}_relu1")(y)
        y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"b{i}_conv2")(y)
        y = L.BatchNormalization(name=f"b{i}_bn2")(y)
        s = x
        if stride != 1:
            s = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"b{i}_proj")(x)
            s = L.BatchNormalization(name=f"b{i}_proj_bn")(s)
        x = L.ReLU(name=f"b{i}_out")(L.Add(name=f"b{i}_add")([s, y]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(10, activation="softmax", name="head")(x), name="resnetish")

def kitchen():
    inp = keras.Input((8, 8, 1))
    x = L.Rescaling(2.0, offset=-1.0)(inp)
    x = L.ZeroPadding2D(1)(x)
    a = L.Conv2D(4, 3, activation="relu")(x)
    b = L.SeparableConv2D(4, 3, depth_multiplier=2, activation="relu")(x)
    x = L.Concatenate()([a, b])
    x = L.Subtract()([x, L.Multiply()([x, x])])
    x = L.Maximum()([x, L.Average()([x, x])])
    x = L.LayerNormalization()(x)
    x = L.SpatialDropout2D(0.1)(x)
    x = L.Cropping2D(1)(x)
    x = L.UpSampling2D(2)(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Permute((2, 1, 3))(x)
    x = L.Reshape((-1,))(x)
    x = L.Dropout(0.2)(x)
    x = L.Dense(10)(x)
    x = L.Softmax()(x)
    return keras.Model(inp, x)

def nested():
    bin_ = keras.Input((8, 8, 1), name="bb_in")
    y = L.Conv2D(6, 3, padding="same", name="conv")(bin_)
    y = L.BatchNormalization(name="bn")(y)
    y = L.ReLU(6.0, name="relu6")(y)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(y)
    backbone = keras.Model(bin_, L.GlobalMaxPooling2D(name="gmp")(y), name="backbone")
    inp = keras.Input((8, 8, 1), name="image")
    x = backbone(inp)
    head = keras.Sequential([keras.Input((6,)), L.Dense(12, activation="relu", name="fc"),
                             L.Dense(10, activation="softmax", name="conv")], name="head")
    return keras.Model(inp, head(x), name="outer")

def mobilenet():
    return keras.applications.MobileNetV2(alpha=0.35, input_shape=(32, 32, 3), weights=None, classes=10)

def two_inputs():
    a, b = keras.Input((4,), name="left"), keras.Input((4,), name="right")
    return keras.Model([a, b], L.Dense(2, name="d")(L.Concatenate(name="cat")([a, b])))

def group_norm():
    inp = keras.Input((8, 8, 4))
    return keras.Model(inp, L.Dense(10)(L.Flatten()(L.GroupNormalization(2, name="gn")(inp))))

def lstm():
    inp = keras.Input((5, 3))
    return keras.Model(inp, L.Dense(10)(L.LSTM(4, name="memory")(inp)))

rng = np.random.default_rng(0)
for name, fn, suffixes in [("resnet", resnet, [".keras", ".h5"]), ("kitchen", kitchen, [".keras", ".h5"]),
                           ("nested", nested, [".keras"]), ("mobilenet", mobilenet, [".keras"]),
                           ("two_inputs", two_inputs, [".keras"]), ("group_norm", group_norm, [".keras"]),
                           ("lstm", lstm, [".keras"])]:
    model = fn()
    if name == "resnet":  # trained-looking batch-norm statistics, so folding them matters
        for layer in model.layers:
            if isinstance(layer, L.BatchNormalization):
                c = layer.moving_mean.shape[0]
                layer.moving_mean.assign(rng.normal(0, 0.3, c).astype("float32"))
                layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
                layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    for suffix in suffixes:
        path = f"{out}/{name}{suffix}"
        model.save(path)
        if name in ("two_inputs", "group_norm", "lstm"):
            continue
        loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
        # the converter's sample inputs (keras3.sample_inputs)
        x = np.random.default_rng(0).random((4, *model.input_shape[1:])).astype("float32")
        np.save(f"{out}/{name}{suffix}.out.npy", np.asarray(loaded.predict(x, verbose=0)))
        if name == "resnet" and suffix == ".keras":
            named = [l for l in loaded.layers if l.__class__.__name__ != "InputLayer"]
            probe = keras.Model(loaded.inputs, [l.output for l in named])
            np.savez(f"{out}/{name}{suffix}.layers.npz",
                     **{l.name: np.asarray(o) for l, o in zip(named, probe.predict(x, verbose=0))})
    made[name] = int(model.count_params())
print(json.dumps(made))
"""


@pytest.fixture(scope="module")
def k3(tmp_path_factory):
    """Keras 3 files (name -> path) plus Keras 3's own outputs, built in one subprocess."""
    out = tmp_path_factory.mktemp("keras3")
    proc = subprocess.run([sys.executable, "-c", BUILD, str(out)], env=keras3.reference_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    params = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, params


def _reference_from_fixture(path, x, per_layer=False, timeout_s=0):
    """Keras 3's outputs recorded by the fixture, in place of a new Keras 3 subprocess."""
    path = Path(path)
    if per_layer:
        with np.load(f"{path}.layers.npz") as z:
            return {k: z[k] for k in z.files}
    assert np.allclose(x, keras3.sample_inputs_of(x.shape[1:]))
    return np.load(f"{path}.out.npy")


@pytest.fixture
def recorded(monkeypatch):
    monkeypatch.setattr(keras3, "reference_outputs", _reference_from_fixture)


@pytest.mark.parametrize("name, suffix, must_have", [
    ("resnet", ".keras", {"Add", "BatchNormalization", "Conv2D"}),
    ("resnet", ".h5", {"Add", "BatchNormalization"}),
    ("kitchen", ".keras", {"Concatenate", "DepthwiseConv2D", "Conv2DTranspose", "LayerNormalization", "Permute"}),
    ("kitchen", ".h5", {"Concatenate", "DepthwiseConv2D"}),
    ("nested", ".keras", {"DepthwiseConv2D", "Dense"}),
    ("mobilenet", ".keras", {"DepthwiseConv2D", "Add", "ZeroPadding2D", "ReLU"}),
])
def test_keras3_graphs_convert_with_their_weights_and_agree(k3, recorded, name, suffix, must_have):
    out, params = k3
    path = out / f"{name}{suffix}"
    model = models.load_model(path)  # converts and checks (against the recorded Keras 3 outputs)
    assert isinstance(model, tf_keras.Model)
    assert model.count_params() == params[name]
    assert must_have <= {layer.__class__.__name__ for layer in model.layers}
    x = keras3.sample_inputs(model)
    expected = np.load(f"{path}.out.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_nested_models_are_flattened_with_unique_names(k3, recorded):
    model = models.load_model(k3[0] / "nested.keras")
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert "conv" in names and "head_conv" in names  # the head's "conv" clashed with the backbone's
    assert not any(isinstance(layer, tf_keras.Model) for layer in model.layers)


def test_separable_conv_is_split_into_depthwise_and_pointwise(k3, recorded):
    model = models.load_model(k3[0] / "kitchen.keras")
    dw = model.get_layer("separable_conv2d_depthwise")
    pw = model.get_layer("separable_conv2d")
    assert isinstance(dw, tf_keras.layers.DepthwiseConv2D) and dw.depth_multiplier == 2 and not dw.use_bias
    assert isinstance(pw, tf_keras.layers.Conv2D) and pw.kernel_size == (1, 1)


def test_the_real_check_runs_keras3_in_a_subprocess(k3):
    """No recorded outputs: models.load_model asks Keras 3 itself (TF_USE_LEGACY_KERAS unset)."""
    model = models.load_model(k3[0] / "nested.keras")
    assert model.output_shape == (None, 10)
    assert os.environ.get("TF_USE_LEGACY_KERAS") == "1"  # this process stays on Keras 2
    assert "TF_USE_LEGACY_KERAS" not in keras3.reference_env()


def test_a_disagreement_is_refused_naming_the_first_differing_layer(k3, recorded, monkeypatch):
    # Drop epsilon from the batch-norm conversion: stem_bn (epsilon 0.5) then computes differently.
    monkeypatch.setitem(keras3.LAYERS, "BatchNormalization", ("axis", "momentum", "center", "scale"))
    with pytest.raises(ModelLoadError) as e:
        models.load_model(k3[0] / "resnet.keras")
    message = str(e.value)
    assert "\n" not in message
    assert "differ from Keras 3's" in message and "first at layer stem_bn (BatchNormalization)" in message


@pytest.mark.parametrize("name, pattern", [
    ("group_norm", r"^group_norm.keras: layer gn \(GroupNormalization\) cannot be converted to Keras 2; supported"),
    ("lstm", r"recurrent layer LSTM \(memory\)"),
    ("two_inputs", r"^two_inputs.keras: the model has 2 inputs \(left, right\); only single-input"),
])
def test_unconvertible_models_are_refused_in_one_line(k3, name, pattern):
    with pytest.raises(ModelLoadError, match=pattern) as e:
        models.load_model(k3[0] / f"{name}.keras")
    assert "\n" not in str(e.value)


def test_a_converted_resnet_is_pruned_clustered_and_quantized_to_int8(k3, recorded, tmp_path):
    from compression.engine.pipeline import run_recipe
    from compression.recipe import Recipe

    npz = tmp_path / "d.npz"
    np.savez(npz, **make_arrays(n_train=120, n_test=40))
    steps = [{"method": "prune", "schedule": "constant_sparsity", "target_sparsity": 0.5, "epochs": 1,
              "batch_size": 40},
             {"method": "cluster", "number_of_clusters": 8, "epochs": 1, "batch_size": 40},
             {"method": "quantize", "epochs": 1, "batch_size": 40}]
    recipe = tiny_recipe(npz, steps, export="int8_full", baseline={"path": str(k3[0] / "resnet.keras")})
    report = run_recipe(Recipe.from_dict(recipe), tmp_path / "run")
    kernels = {"stem", "b0_conv1", "b0_conv2", "b1_conv1", "b1_conv2", "b1_proj", "head"}
    final = {row["name"]: row for row in report["final"]["layers"]}
    assert set(final) == kernels  # every kernel found in the int8 file, batch norm folded into the convs
    assert [s["variant"] for s in report["stages"]] == ["prune", "sparsity_preserving_cluster", "pcqat"]
    for name, row in final.items():
        assert row["sparsity"] >= 0.45, (name, row["sparsity"])
        # int8 per channel: each output channel holds its clusters (times its own scale) and the zeros
        assert (row["unique_values_per_channel"] or row["unique_values"]) <= 8 + 1, (name, row)
    assert report["input"]["adaptation"] == "the dataset's 8x8 samples were laid out as 8x8x1 (the same values, reshaped)"


def test_images_are_padded_and_channel_tiled_with_a_sentence(tiny_npz):
    ds = data.load_npz(tiny_npz)  # 8x8 samples
    model = models.build("resnet_20", (12, 12, 3), 10)
    adapted, spec = models.adapt_input(model, ds, "m.keras")
    sentence = spec["sentence"]
    assert adapted.x_train.shape[1:] == (12, 12, 3)
    assert "zero-padded to 12x12 (2 pixels above, 2 below, 2 left, 2 right)" in sentence
    assert "single channel copied to 3 channels" in sentence
    x = adapted.x_test[0]
    np.testing.assert_array_equal(x[2:10, 2:10, 0], ds.x_test[0])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    assert not x[:2].any() and not x[:, 10:].any()
    smaller = models.build("resnet_20", (4, 4, 1), 10)
    shrunk, spec = models.adapt_input(smaller, ds, "m.keras")
    assert shrunk.x_test.shape[1:] == (4, 4, 1) and "resized to 4x4 (bilinear)" in spec["sentence"]


def test_inputs_that_are_not_images_are_refused_saying_what_the_model_expects(tiny_npz):
    ds = data.load_npz(tiny_npz)
    flat = tf_keras.Sequential([tf_keras.Input((10,)), tf_keras.layers.Dense(10)])
    with pytest.raises(ModelLoadError, match=r"expects inputs of shape 10, the samples are 8x8"):
        models.adapt_input(flat, ds, "m.keras")
    gray_model = models.build("resnet_20", (8, 8, 1), 10)
    rgb = replace(ds, x_train=np.repeat(ds.x_train[..., None], 3, -1), x_val=np.repeat(ds.x_val[..., None], 3, -1),
                  x_test=np.repeat(ds.x_test[..., None], 3, -1))
    with pytest.raises(ModelLoadError, match=r"expects inputs of shape 8x8x1, the samples are 8x8x3"):
        models.adapt_input(gray_model, rgb, "m.keras")


@pytest.mark.parametrize("arch, shape, params", [
    ("resnet_20", (8, 8, 1), 273_754), ("resnet_20", (28, 28, 1), 273_754),
    ("mobilenet_v2", (8, 8, 1), 90_538), ("mobilenet_v2", (28, 28, 1), 90_538),
])
def test_cnn_baselines_keep_a_feature_map_on_small_images(arch, shape, params):
    model = models.build(arch, shape, 10)
    assert model.count_params() == params
    smallest = min(layer.output_shape[1] for layer in model.layers if len(layer.output_shape) == 4)
    assert smallest >= 2
    kinds = {layer.__class__.__name__ for layer in model.layers}
    assert {"BatchNormalization", "Add"} <= kinds
    if arch == "mobilenet_v2":
        assert "DepthwiseConv2D" in kinds
        assert any(getattr(layer, "max_value", None) == 6.0 for layer in model.layers)


@pytest.mark.slow
def test_big_model_bench_quick_mode_runs_and_keeps_files_small(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "big_model.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["final_sparsity"] >= 0.45
    assert result["file_bytes"]["weights.json"] < 2_000_000
    assert result["file_bytes"]["predictions.npz"] < 200_000
    assert 0 < result["peak_rss_mb"] < 4096
