"""Hostile inputs, by class: each is built here, refused with one line, and never runs or fills memory.

Model files carrying code are real exploits (a control test shows tf_keras runs them when
loaded naively); every other path must leave their marker file unwritten.
"""

import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras)
from compression.inputs import data, limits, modelfile
from compression.cli.main import main as cli_main
from compression.errors import DatasetError, ModelLoadError, RecipeError, UserError
from compression.recipe import Recipe
from compression.studio import uploads
from conftest import make_arrays, tiny_recipe

sys.path.insert(0, str(Path(__file__).parent))


def one_line(err) -> str:
    text = str(err.value if hasattr(err, "value") else err)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# --- model files that carry code ---------------------------------------------------------------


@pytest.fixture(scope="module")
def armed(tmp_path_factory):
    """A TimeDistributed(Lambda) model whose Lambda writes ``marker`` when it runs, as .h5 and .keras."""
    import tf_keras

    folder = tmp_path_factory.mktemp("armed")
    marker = folder / "code-ran"
    inp = tf_keras.Input((3, 4))
    x = tf_keras.layers.TimeDistributed(
        tf_keras.layers.Lambda(lambda t, p=str(marker): (open(p, "w").close(), t)[1]))(inp)
    x = tf_keras.layers.Flatten()(x)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2, activation="softmax")(x))
    model.save(folder / "armed.h5")
    model.save(folder / "armed.keras")
    assert marker.exists()  # building the model ran the Lambda: the payload works
    marker.unlink()
    return folder, marker


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "tiny.npz"
    np.savez(path, **make_arrays(n_train=40, n_test=10))
    return path


def test_control_tf_keras_alone_runs_the_wrapped_lambda_from_an_h5(armed):
    """Why the checks matter: without them, loading the .h5 runs the file's bytecode."""
    import tf_keras

    folder, marker = armed
    try:
        tf_keras.models.load_model(folder / "armed.h5", compile=False)
        assert marker.exists()
    finally:
        marker.unlink(missing_ok=True)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_a_wrapped_lambda_is_refused_everywhere_without_running(armed, suffix, tmp_path, npz_file, capsys):
    from compression.engine import models

    folder, marker = armed
    path = folder / f"armed{suffix}"
    for attempt in (modelfile.inspect, models.inspect_model_file, models.load_model):
        with pytest.raises(ModelLoadError) as err:
            attempt(path)
        assert "Lambda layer (lambda, inside time_distributed)" in one_line(err) and "Python code" in str(err.value)
    with pytest.raises(uploads.UploadError, match="Lambda"):
        uploads.save_upload(path.read_bytes(), path.name, "model", tmp_path / "home", deep=False)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(tiny_recipe(npz_file, baseline={"path": str(path)})))
    for argv in (["check", str(recipe)], ["run", str(recipe), "--out", str(tmp_path / "out"), "--quiet"]):
        assert cli_main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "Lambda layer" in lines[0], lines
    assert not (tmp_path / "out").exists()
    assert not marker.exists()


def test_the_h5_loader_refuses_bytecode_even_past_the_inspector(armed, monkeypatch):
    """Defence in depth: with the inspector switched off, tf_keras' safe mode still refuses the Lambda."""
    from compression.engine import models

    folder, marker = armed
    monkeypatch.setattr(models, "inspect_model_file", lambda p: {"keras_version": "2.21.0"})
    with pytest.raises(ModelLoadError) as err:
        models.load_model(folder / "armed.h5")
    assert "could not be loaded" in one_line(err)
    assert not marker.exists()


def _model(*layers, compile_config=None):
    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [None, 4]}}, *layers]}}
    if compile_config is not None:
        config["compile_config"] = compile_config
    return config


def _layer(cls, name="l", **config):
    return {"class_name": cls, "config": {"name": name, **config}}


@pytest.mark.parametrize("config, message", [
    (_model(_layer("TimeDistributed", "td", layer=_layer("TFOpLambda", "op"))), "TFOpLambda layer (op, inside td)"),
    (_model(_layer("TimeDistributed", "a", layer=_layer("TimeDistributed", "b", layer=_layer("Lambda", "deep")))),
     "Lambda layer (deep, inside b)"),
    (_model({"class_name": "Sequential", "config": {"name": "inner", "layers": [_layer("SlicingOpLambda", "s")]}}),
     "SlicingOpLambda layer (s, inside inner)"),
    (_model(_layer("RNN", "rnn", cell=_layer("Lambda", "cell"))), "Lambda layer (cell, inside rnn)"),
    (_model(_layer("Dense", "d", units=2, activation={"class_name": "__lambda__", "config": {"code": "x"}})),
     "serialised Python lambda (inside d)"),
    (_model(_layer("Dense", "d", units=2, activation={"module": "os", "class_name": "function", "config": "system",
                                                      "registered_name": "function"})), "serialised Python function"),
    (_model({"class_name": "Mystery", "config": {"function_type": "lambda", "function": ["AAAA", None, None]}}),
     "holds Python code"),
    (_model({"module": "evil.layers", "class_name": "Dense", "config": {"name": "e"}, "registered_name": "evil>Dense"}),
     "custom layer 'evil>Dense' (e)"),
    (_model(_layer("Backdoor", "b")), "custom layer 'Backdoor' (b)"),
    (_model(_layer("Dense", "d", kernel_initializer={"module": "evil", "class_name": "Init", "registered_name": "evil>Init"})),
     "custom layer 'evil>Init' (inside d)"),
    (_model(_layer("LSTM", "lstm", units=4)), "recurrent layer LSTM (lstm)"),
    (_model(_layer("Bidirectional", "bi", layer=_layer("GRU", "gru"))), "recurrent layer"),
    (_layer("Lambda", "top"), "holds a 'Lambda'; only Sequential and functional"),
])
def test_every_object_in_the_config_is_judged(config, message):
    with pytest.raises(ModelLoadError) as err:
        modelfile.check_config(config, "m.keras")
    assert message in one_line(err)


def test_a_keras3_style_config_with_standard_objects_passes():
    dtype = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}
    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "keras_history": ["in", 0, 0]}}
    dense = {"module": "keras.layers", "class_name": "Dense", "registered_name": None, "config": {
        "name": "d", "dtype": dtype, "units": 2, "kernel_initializer": {"module": "keras.initializers",
                                                                      "class_name": "GlorotUniform", "config": {}},
        "kernel_regularizer": {"class_name": "L2", "config": {"l2": 1e-4}}}, "inbound_nodes": [{"args": [tensor]}]}
    compile_config = {"optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {}},
                      "loss": {"module": "mine", "class_name": "function", "config": "my_loss"}}  # never deserialised
    classes = modelfile.check_config(_model(dense, _layer("Add", "add"), compile_config=compile_config), "m.keras")
    assert {"InputLayer", "Dense", "Add"} <= set(classes)


def test_a_recurrent_model_is_refused_up_front_by_the_cli(tmp_path, npz_file, capsys):
    import tf_keras

    model = tf_keras.Sequential([tf_keras.Input((5, 3)), tf_keras.layers.LSTM(4), tf_keras.layers.Dense(2)])
    model.save(tmp_path / "lstm.keras")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(tiny_recipe(npz_file, baseline={"path": str(tmp_path / "lstm.keras")})))
    assert cli_main(["run", str(recipe), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "recurrent layer LSTM" in lines[0] and "TFLite" in lines[0], lines
    assert not (tmp_path / "out").exists()


# --- model files that cost too much ---------------------------------------------------------------


def _keras_zip(path: Path, config_bytes: bytes, extra: dict | None = None, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("config.json", config_bytes)
        z.writestr("metadata.json", json.dumps({"keras_version": "2.21.0"}))
        for name, blob in (extra or {}).items():
            z.writestr(name, blob)
    return path


def _h5(path: Path, config: str, **datasets):
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = config
        f.attrs["keras_version"] = "2.21.0"
        for name, shape in datasets.items():
            f.create_dataset(name, shape=shape, dtype="f4", chunks=(1024, 1024), compression="gzip")
    return path


def test_a_config_nested_200k_deep_is_refused_before_parsing(tmp_path):
    deep = b"[" * 200_000 + b"]" * 200_000
    for path in (_keras_zip(tmp_path / "deep.keras", deep), _h5(tmp_path / "deep.h5", deep.decode())):
        with pytest.raises(ModelLoadError) as err:
            modelfile.inspect(path)
        assert "nests 200000 levels deep" in one_line(err)
    with pytest.raises(uploads.UploadError, match="nests 200000"):
        uploads.check_model_file(tmp_path / "deep.h5")


def test_an_oversized_config_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_CONFIG_BYTES", 10_000)
    config = json.dumps(_model(*[_layer("Dense", f"d{i}", units=2) for i in range(400)])).encode()
    assert len(config) > 10_000
    with pytest.raises(ModelLoadError) as err:
        modelfile.inspect(_keras_zip(tmp_path / "big.keras", config))
    assert "config.json unpacks to" in one_line(err) and "at most 10,000 bytes" in str(err.value)
    with pytest.raises(ModelLoadError, match="model config is .* at most 10,000 bytes"):
        modelfile.inspect(_h5(tmp_path / "big.h5", config.decode()))


def test_keras_zip_bombs_and_huge_declared_weights_are_refused(tmp_path):
    good = json.dumps(_model(_layer("Dense", "d", units=2))).encode()
    bomb = _keras_zip(tmp_path / "bomb.keras", good, {"model.weights.h5": bytes(20 * limits.MB)}, zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < limits.MB
    with pytest.raises(ModelLoadError) as err:
        modelfile.inspect(bomb)
    assert "model.weights.h5 expands" in one_line(err) and "zip bomb" in str(err.value)
    huge = _h5(tmp_path / "huge.h5", good.decode(), w=(2**20, 2**10))  # 4 GB declared, a few KB on disk
    assert huge.stat().st_size < limits.MB
    with pytest.raises(ModelLoadError, match="declares 4.0 GB of weights; at most 1.0 GB"):
        modelfile.inspect(huge)


# --- datasets ----------------------------------------------------------------------------------------


def _npz(path: Path, members: dict, compression=zipfile.ZIP_STORED) -> Path:
    """An .npz written member by member; a value of bytes is written as it is (a forged member)."""
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, value in members.items():
            if isinstance(value, bytes):
                z.writestr(name, value)
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
                z.writestr(f"{name}.npy", buf.getvalue())
    return path


def _arrays(**changes):
    arrays = make_arrays(n_train=40, n_test=10)
    arrays.update(changes)
    return arrays


def _both_loaders(path: Path, home: Path) -> list[str]:
    """The engine's loader and the dashboard's upload check must agree; returns both messages."""
    messages = []
    with pytest.raises(DatasetError) as err:
        data.load_npz(path)
    messages.append(one_line(err))
    with pytest.raises(uploads.UploadError) as err:
        uploads.save_upload(path.read_bytes(), path.name, "dataset", home, deep=False)
    messages.append(one_line(err))
    assert not (home / "uploads").exists()
    return messages


def test_an_npz_declaring_gigabytes_in_its_header_is_refused_unloaded(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**31, 1)})
    arrays = _arrays()
    arrays["x_train"] = header.getvalue() + bytes(64)  # the header lies: 8 GB declared, 64 bytes present
    members = {("x_train.npy" if k == "x_train" else k): v for k, v in arrays.items()}
    for message in _both_loaders(_npz(tmp_path / "liar.npz", members), tmp_path / "home"):
        assert "unpacks to 8.0 GB of arrays" in message and limits.DATASET_BYTES_ENV in message


def test_a_deflated_zero_bomb_is_refused(tmp_path):
    path = _npz(tmp_path / "bomb.npz", _arrays(x_train=np.zeros((20_000, 1024), np.uint8),
                                               y_train=np.arange(20_000) % 2), zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < limits.MB
    for message in _both_loaders(path, tmp_path / "home"):
        assert "x_train.npy expands" in message and "zip bomb" in message


def test_the_dataset_budget_is_set_by_the_environment(tmp_path, monkeypatch):
    path = _npz(tmp_path / "ok.npz", _arrays())
    assert data.load_npz(path).num_classes == 10
    monkeypatch.setenv(limits.DATASET_BYTES_ENV, "10000")
    for message in _both_loaders(path, tmp_path / "home"):
        assert "at most 10,000 bytes" in message


@pytest.mark.parametrize("changes, message, forbidden", [
    ({"x_train": np.zeros((40, 0), np.float32), "x_test": np.zeros((10, 0), np.float32)}, "hold no values", None),
    ({"y_train": np.arange(40) % 2 == 0}, "true/false values; labels must be integers", "pickle"),
    ({"y_test": np.array(["cat", "dog"] * 5)}, "holds text", "pickle"),
    ({"y_train": np.array([object()] * 40, dtype=object)}, "labels must be integers", None),
    ({"x_train": np.array([{"a": 1}] * 40, dtype=object)}, "pickles", None),
    ({"x_test": b"raw bytes, not an array"}, "x_test is not a NumPy array", None),
])
def test_arrays_that_cannot_be_samples_or_labels_are_named(tmp_path, changes, message, forbidden):
    arrays = _arrays()
    for k, v in changes.items():
        if isinstance(v, np.ndarray) and v.dtype == object:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, v, allow_pickle=True)
            arrays[f"{k}.npy"] = buf.getvalue()
            arrays.pop(k)
        else:
            arrays[k] = v
    for got in _both_loaders(_npz(tmp_path / "bad.npz", arrays), tmp_path / "home"):
        assert message in got
        assert forbidden is None or forbidden not in got


# --- recipes ---------------------------------------------------------------------------------------


def _recipe(**changes) -> dict:
    recipe = {"name": "r", "dataset": "digits", "baseline": {"arch": "lenet_300_100"}, "steps": []}
    recipe.update(changes)
    return recipe


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "nests 100000 levels deep; at most 32"),
    ('{"name": "r", "max_train_samples": 1' + "0" * 5000 + "}", "a number with 5001 digits"),
    (json.dumps(_recipe()).replace('"steps": []', '"steps": [], "latency_runs": NaN'), "holds NaN"),
    (json.dumps(_recipe()) + " " * (2 * limits.MB), "at most 1 MB"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_recipe_text_is_bounded_before_parsing(text, message):
    with pytest.raises(RecipeError) as err:
        Recipe.from_json(text)
    assert message in one_line(err)


def test_a_huge_recipe_file_is_not_read_whole(tmp_path, capsys):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(_recipe()) + " " * (3 * limits.MB))
    with pytest.raises(RecipeError, match="larger than 1 MB"):
        Recipe.load(path)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert cli_main(["check", str(deep)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "nests 100000 levels" in lines[0]


@pytest.mark.parametrize("changes, field, message", [
    ({"baseline": {"arch": "lenet_300_100", "seed": 2**40}}, "baseline.seed", "above the maximum 4294967295"),
    ({"baseline": {"arch": "lenet_300_100", "seed": -1}}, "baseline.seed", "below the minimum 0"),
    ({"name": "\x1b[31mred"}, "name", "printable"),
    ({"name": "two\nlines"}, "name", "printable"),
    ({"name": "x" * 101}, "name", "at most 100 characters"),
])
def test_seed_and_name_are_bounded(changes, field, message):
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(_recipe(**changes))
    assert err.value.field == field and message in one_line(err)


def test_the_largest_seed_and_a_unicode_name_are_accepted():
    r = Recipe.from_dict(_recipe(name="Élagage 90 % — essai", baseline={"arch": "lenet_300_100", "seed": 2**32 - 1}))
    assert r.baseline.seed == 2**32 - 1


# --- paths named by a recipe from the browser -------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    home = tmp_path / "home"
    stored = home / "uploads" / "models" / "abc" / "m.keras"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"x")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.h5").write_bytes(b"x")
    return home, stored, outside


def test_a_browser_recipe_may_name_only_workspace_files(workspace):
    home, stored, outside = workspace
    ok = uploads.confine_recipe_paths(Recipe.from_dict(_recipe(baseline={"path": str(stored)})), home)
    assert ok.baseline.path == os.path.realpath(stored)
    run_model = str(home / "runs" / "20260101-120000-a1b2c3" / "baseline.keras")
    assert uploads.confine_recipe_paths(Recipe.from_dict(_recipe(baseline={"path": run_model})), home).baseline.path
    (home / "uploads" / "models" / "abc" / "link.h5").symlink_to(outside / "secret.h5")
    for bad in (str(outside / "secret.h5"), str(home / "uploads" / ".." / ".." / "elsewhere" / "secret.h5"),
                str(home / "uploads" / "models" / "abc" / "link.h5"), "/etc/passwd.h5", "relative/m.h5",
                str(home / "queue.h5")):
        with pytest.raises(uploads.UploadError) as err:
            uploads.confine_recipe_paths(Recipe.from_dict(_recipe(baseline={"path": bad})), home)
        assert one_line(err).startswith("baseline.path:") and "outside the workspace" in str(err.value)
    with pytest.raises(uploads.UploadError, match="dataset.npz: .* outside the workspace"):
        uploads.confine_recipe_paths(Recipe.from_dict(_recipe(dataset={"npz": str(outside / "d.npz")})), home)


def test_the_pipeline_page_refuses_an_uploaded_recipe_pointing_outside(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from synthetic import make_workspace

    monkeypatch.setenv("COMPRESSION_HOME", str(tmp_path))
    monkeypatch.setenv("COMPRESSION_EMBEDDED_WORKER", "0")
    make_workspace(tmp_path)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=30)
    at.run()
    at.switch_page("views/pipeline.py").run()
    before = at.session_state["pl_fallback"] if "pl_fallback" in at.session_state else None
    evil = json.dumps(_recipe(baseline={"path": "/tmp/evil-model.h5"})).encode()
    at.file_uploader(key="pl_json").upload("evil.json", evil, "application/json").run()
    assert not at.exception
    assert any("outside the workspace" in e.value for e in at.error)
    assert (at.session_state["pl_fallback"] if "pl_fallback" in at.session_state else None) == before
    deep = b"[" * 50_000 + b"]" * 50_000
    at.file_uploader(key="pl_json").set_value(("deep.json", deep, "application/json")).run()
    assert not at.exception
    assert any("nests 50000 levels" in e.value for e in at.error)
