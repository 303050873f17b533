"""Baselines and safe loading of users' model files."""

import json
import zipfile

import numpy as np
import pytest
import tf_keras

from compression.inputs import data
from compression.engine import models
from compression.errors import ModelLoadError


@pytest.fixture(scope="module")
def small_model():
    return models.build("lenet_300_100", (8, 8), 10, seed=0)


@pytest.mark.parametrize("arch, shape, params", [
    ("lenet_300_100", (28, 28), 266_610),
    ("dense_redundant", (784,), 926_986),
    ("lenet_5", (28, 28, 1), None),
    ("lenet_5", (8, 8), None),
])
def test_architectures_build_for_any_input(arch, shape, params):
    m = models.build(arch, shape, 10)
    assert m.output_shape == (None, 10)
    if params is not None:
        assert m.count_params() == params
    if arch == "lenet_5":
        assert any(isinstance(layer, tf_keras.layers.Conv2D) for layer in m.layers)


def test_dense_redundant_is_the_textbook_stack():
    m = models.build("dense_redundant", (28, 28), 10)
    widths = [layer.units for layer in m.layers if isinstance(layer, tf_keras.layers.Dense)]
    assert widths == [512, 512, 256, 256, 128, 128, 64, 64, 32, 32, 10]


def test_training_reports_progress_and_is_seeded(tiny_npz):
    ds = data.load_npz(tiny_npz)
    events = []
    a = models.train_baseline("lenet_300_100", ds, epochs=2, batch_size=32, seed=3,
                              report=lambda *e: events.append(e))
    b = models.train_baseline("lenet_300_100", ds, epochs=2, batch_size=32, seed=3)
    batches = int(np.ceil(len(ds.x_train) / 32))
    assert (2, 2, batches, batches) == events[-1][:4]  # epoch, epochs, batch, batches
    assert events[-1][4] is not None and events[-1][5] is not None  # loss, accuracy
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert np.mean(models.predict_classes(a, ds.x_test) == ds.y_test) > 0.5


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_tf_keras_files_load_back(tmp_path, small_model, suffix):
    path = tmp_path / f"m{suffix}"
    small_model.save(path)
    loaded = models.load_model(path)
    x = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), small_model.predict(x, verbose=0), rtol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layers_are_refused_without_running_them(tmp_path, suffix):
    marker = tmp_path / "ran"
    inputs = tf_keras.Input((4,))
    outputs = tf_keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / f"lambda{suffix}"
    tf_keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelLoadError, match="Lambda layer .*Python code"):
        models.load_model(path)
    assert not marker.exists()


def test_custom_layers_are_refused(tmp_path):
    path = tmp_path / "custom.keras"
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"module": "evil.layers", "class_name": "Backdoor", "config": {"name": "b"}, "registered_name": "evil>Backdoor"}
    ]}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "2.21.0"}))
    with pytest.raises(ModelLoadError, match="custom layer 'evil>Backdoor'"):
        models.load_model(path)


def test_corrupt_and_wrong_files_are_refused(tmp_path):
    bad = tmp_path / "corrupt.keras"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="not a valid .keras file"):
        models.load_model(bad)
    bad_h5 = tmp_path / "corrupt.h5"
    bad_h5.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="not a valid HDF5"):
        models.load_model(bad_h5)
    with pytest.raises(ModelLoadError, match="does not exist"):
        models.load_model(tmp_path / "missing.keras")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="only .keras and .h5"):
        models.load_model(onnx)


def _keras3_model():
    import keras  # Keras 3, as users have it

    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(10, activation="softmax"),
    ])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras3_files_are_rebuilt_with_their_weights(tmp_path, suffix):
    k3 = _keras3_model()
    x = np.random.default_rng(1).random((5, 8, 8, 1)).astype(np.float32)
    expected = np.asarray(k3.predict(x, verbose=0))
    path = tmp_path / f"k3{suffix}"
    k3.save(path)
    loaded = models.load_model(path)
    assert isinstance(loaded, tf_keras.Model)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_keras3_lambda_is_refused(tmp_path):
    import keras

    m = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x + 1), keras.layers.Dense(2)])
    path = tmp_path / "k3lambda.keras"
    m.save(path)
    with pytest.raises(ModelLoadError, match="Lambda"):
        models.load_model(path)


def test_adapt_reshapes_layouts_and_checks_classes(tiny_npz):
    ds = data.load_npz(tiny_npz)  # samples are 8x8
    flat = models.build("lenet_300_100", (64,), 10)
    assert models.adapt(flat, ds).x_train.shape[1:] == (64,)
    conv = models.build("lenet_5", (8, 8, 1), 10)
    assert models.adapt(conv, ds).x_test.shape[1:] == (8, 8, 1)
    with pytest.raises(ModelLoadError, match="predicts 3 classes but dataset .* has 10"):
        models.adapt(models.build("lenet_300_100", (8, 8), 3), ds)
    with pytest.raises(ModelLoadError, match="does not fit"):
        models.adapt(models.build("lenet_300_100", (28, 28), 10), ds)


def test_clone_shares_no_state(small_model):
    copy = models.clone(small_model)
    before = [w.copy() for w in small_model.get_weights()]
    copy.layers[-1].kernel.assign(np.zeros(copy.layers[-1].kernel.shape))
    for a, b in zip(before, small_model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(8, 8), (28, 28, 1), (32, 32, 3)])
def test_the_layer_list_the_recipe_checks_before_queueing_is_what_build_makes(shape):
    """compression.recipe.layers.arch_layers (TensorFlow-free, read by check and submit) names every layer with
    weights each built-in architecture has, in model order, for any input it takes."""
    from compression.engine.metrics import weight_layers
    from compression.recipe.choices import Arch
    from compression.recipe.layers import arch_layers

    for arch in Arch:
        try:
            model = models.build(arch, shape, 10)
        except ModelLoadError:  # lenet_5_caffe needs 16x16 images
            continue
        assert arch_layers(arch) == [(layer.name, type(layer).__name__) for layer in weight_layers(model)], arch
