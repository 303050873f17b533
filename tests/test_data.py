"""Datasets: offline-first lookup, the fixed validation split, and checks of a user's .npz."""

import gzip

import numpy as np
import pytest

from compression.inputs import data
from compression.errors import DatasetError
from conftest import make_arrays


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-home"))
    monkeypatch.setenv("COMPRESSION_OFFLINE", "1")
    return tmp_path


def write_idx_gz(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_digits_works_offline_with_a_fixed_split():
    a, b = data.load("digits"), data.load("digits")
    assert a.input_shape == (8, 8) and a.num_classes == 10
    assert a.x_train.dtype == np.float32 and 0 <= a.x_train.min() and a.x_train.max() <= 1
    assert len(a.x_val) == pytest.approx(0.1 * (len(a.x_train) + len(a.x_val)), abs=1)
    np.testing.assert_array_equal(a.x_val, b.x_val)  # the validation split never moves
    assert len(a.x_test) == 1797 // 5


def test_mnist_is_read_from_compression_data_dir(data_dir):
    arrays = make_arrays(n_train=50, n_test=20, shape=(28, 28))
    u8 = {k: (v * 255).astype(np.uint8) if k.startswith("x") else v for k, v in arrays.items()}
    np.savez(data_dir / "mnist.npz", **u8)
    ds = data.load("mnist")
    assert ds.name == "mnist" and ds.input_shape == (28, 28)
    assert len(ds.x_train) + len(ds.x_val) == 50 and len(ds.x_test) == 20
    assert ds.x_train.max() <= 1.0


def test_fashion_mnist_is_read_from_the_idx_files(data_dir):
    folder = data_dir / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_idx_gz(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (40, 28, 28)))
    write_idx_gz(folder / "train-labels-idx1-ubyte.gz", np.arange(40) % 10)
    write_idx_gz(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (10, 28, 28)))
    write_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    ds = data.load("fashion_mnist")
    assert ds.input_shape == (28, 28) and ds.class_names[9] == "Ankle boot"
    np.testing.assert_array_equal(ds.y_test, np.arange(10))


def test_missing_dataset_says_where_to_put_it(data_dir):
    with pytest.raises(DatasetError) as info:
        data.load("cifar10")
    message = str(info.value)
    assert "COMPRESSION_DATA_DIR" in message and str(data_dir) in message


def test_limited_caps_training_but_keeps_the_test_split():
    ds = data.load("digits").limited(100)
    assert len(ds.x_train) == 100 and len(ds.x_val) == 10 and len(ds.x_test) == 359


def test_reshaped_to_a_models_layout():
    ds = data.load("digits")
    assert ds.reshaped((64,)).x_train.shape[1:] == (64,)
    assert ds.reshaped((8, 8, 1)).x_test.shape[1:] == (8, 8, 1)
    with pytest.raises(DatasetError, match="different numbers of values"):
        ds.reshaped((28, 28))


def test_a_good_npz_loads(tmp_path):
    path = tmp_path / "good.npz"
    np.savez(path, **make_arrays(n_train=40, n_test=10))
    ds = data.load_npz(path)
    assert ds.num_classes == 10 and ds.input_shape == (8, 8)


def _bad(tmp_path, **changes):
    arrays = make_arrays(n_train=40, n_test=10)
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError) as info:
        data.load_npz(path)
    return str(info.value)


def test_npz_problems_are_named(tmp_path):
    assert "lacks y_test" in _bad(tmp_path, y_test=None)
    assert "x_train has 40 samples but y_train has 39" in _bad(tmp_path, y_train=np.arange(39) % 10)
    nan = make_arrays(n_train=40, n_test=10)["x_train"].copy()
    nan[3, 2, 2] = np.nan
    assert "NaN" in _bad(tmp_path, x_train=nan)
    assert "label -1" in _bad(tmp_path, y_test=np.full(10, -1))
    assert "not one-hot" in _bad(tmp_path, y_train=np.eye(10)[np.arange(40) % 10])
    assert "non-integer" in _bad(tmp_path, y_train=np.linspace(0, 1, 40))
    assert "x_test samples have" in _bad(tmp_path, x_test=np.zeros((10, 4, 4), np.float32))
    assert "dtype" in _bad(tmp_path, x_train=np.array(["a"] * 40))
    assert "single class" in _bad(tmp_path, y_train=np.zeros(40, dtype=int))


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "pickle.npz"
    arrays = make_arrays(n_train=40, n_test=10)
    arrays["x_train"] = np.array([object()] * 40, dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match="pickles"):
        data.load_npz(path)


def test_corrupt_npz_is_refused(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        data.load_npz(path)
    with pytest.raises(DatasetError, match="does not exist"):
        data.load_npz(tmp_path / "nowhere.npz")


# --- fitting samples to a model's input: one definition, the same as TensorFlow's ------------------


def test_bilinear_resizing_equals_tensorflows():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((3, 9, 7, 2)).astype(np.float32)
    for size in [(4, 5), (16, 12), (9, 7), (3, 20)]:
        ours = data.resize_bilinear(x, *size)
        theirs = tf.image.resize(x, size, method="bilinear").numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_the_adaptation_spec_is_applied_the_same_way_everywhere():
    x = np.random.default_rng(1).random((5, 8, 8)).astype(np.float32)
    spec = data.adaptation((8, 8), (12, 12, 3))
    assert spec["kind"] == "pad" and spec["pad"] == [2, 2] and "zero-padded to 12x12" in spec["sentence"]
    out = data.adapt_samples(x, spec)
    assert out.shape == (5, 12, 12, 3)
    np.testing.assert_array_equal(out[:, 2:10, 2:10, 0], x)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert data.adapt_samples(x, data.adaptation((8, 8), (64,))).shape == (5, 64)
    assert data.adapt_samples(x, data.adaptation((8, 8), (4, 4, 1))).shape == (5, 4, 4, 1)
    with pytest.raises(Exception, match="only images can be adapted"):
        data.adaptation((8, 8), (10,))
