"""Hostile inputs, by class: each is built here, refused with one line, and never runs or fills memory.

Model files carrying code are real exploits (a control test shows tf_keras runs them when
loaded naively); every other path must leave their marker file unwritten.
"""

import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras)
from compression.inputs import data, limits, modelfile
from compression.cli.main import main as cli_main
from compression.errors import DatasetError, ModelLoadError, RecipeError
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


# =====================================================================================================
# Round 2 (issue 15): each hostile input runs in a subprocess under an address-space limit, so a
# regression fails (MemoryError, a traceback, a non-2 exit) instead of eating the machine. Each case
# asserts the one-line outcome, the exit code and the bound.
# =====================================================================================================

import hashlib  # noqa: E402
import resource  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
CLI_MB = 512  # python -m compression without TensorFlow: about 220 MB of address space to start
STUDIO_MB = 1024  # pandas, Altair, the charts and reports: about 400 MB to start


def limited(command: list[str] | str, mem_mb: int, timeout: float = 120, env: dict | None = None):
    """``python -m compression ARGS`` (a list) or a Python snippet (a str) in a subprocess whose address
    space is capped at ``mem_mb``; returns (exit code, stdout, stderr)."""
    limit = mem_mb * MiB

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    argv = ([sys.executable, "-m", "compression", *command] if isinstance(command, list)
            else [sys.executable, "-c", textwrap.dedent(command)])
    full_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}",
                    **(env or {}))
    p = subprocess.run(argv, preexec_fn=cap, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def error_line(stderr: str) -> str:
    """The one line a refusal prints: no traceback, no second line, no raw control character."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    assert "Traceback" not in stderr and "\x1b" not in stderr, stderr[-3000:]
    return lines[0]


def refused(command, mem_mb: int = CLI_MB, **kw) -> str:
    code, out, err = limited(command, mem_mb, **kw)
    assert code == 2, (code, out[-2000:], err[-3000:])
    return error_line(err)


# --- broken 1: container bombs (compression/dc) --------------------------------------------------------


def _container(total: int, digest: bytes, records: list[bytes], graph: bytes = b"", codec: int = 0,
               graph_len: int | None = None) -> bytes:
    """A model.dc built field by field (container.py's layout), with a valid CRC: only its sizes lie."""
    from compression.dc.container import _HEAD, MAGIC, VERSION

    body = struct.pack("<Q", total) + digest
    body += struct.pack("<BQQ", codec, len(graph) if graph_len is None else graph_len, len(graph)) + graph
    body += struct.pack("<I", len(records)) + b"".join(records)
    return _HEAD.pack(MAGIC, VERSION, zlib.crc32(body)) + body


def _stream(alphabet_lengths: list[int], nbits: int, data: bytes) -> bytes:
    from compression.dc import huffman

    lengths = np.array(alphabet_lengths, dtype=np.uint8)
    return struct.pack("<I", lengths.size) + huffman.pack_lengths(lengths) + struct.pack("<Q", nbits) + data


def _sparse_record(length: int) -> bytes:
    """A tensor of ``length`` int8 zeros: sparse, no entries (the 133-byte bomb's only record)."""
    from compression.dc.container import _REGION, SPARSE

    return (_REGION.pack(0, length, 1, SPARSE) + struct.pack("<BQI", 1, 0, 0)
            + _stream([1], 0, b"") + _stream([1, 1], 0, b""))


@pytest.mark.parametrize("declared", [1 << 30, (1 << 31) - 1])
def test_a_tiny_container_declaring_a_huge_sparse_tensor_is_refused_unallocated(tmp_path, declared):
    blob = _container(declared, bytes(32), [_sparse_record(declared)])
    assert len(blob) < 200
    (tmp_path / "bomb.dc").write_bytes(blob)
    line = refused(["unpack", str(tmp_path / "bomb.dc"), "--out", str(tmp_path / "x.tflite")])
    assert f"declare a TFLite file of {declared:,} bytes" in line and "at most 256x the container" in line
    assert not (tmp_path / "x.tflite").exists()


def test_a_zlib_graph_section_that_inflates_past_its_bound_is_refused_before_inflating(tmp_path):
    c = zlib.compressobj(1)
    zeros, stream = bytes(4 * MiB), bytearray()
    for _ in range(192):  # 768 MiB of zeros in about 3.5 MB: more than the subprocess may hold
        stream += c.compress(zeros)
    stream += c.flush()
    declared = 768 * MiB
    (tmp_path / "zbomb.dc").write_bytes(_container(declared, bytes(32), [], bytes(stream), codec=1, graph_len=declared))
    line = refused(["unpack", str(tmp_path / "zbomb.dc"), "--out", str(tmp_path / "x.tflite")])
    assert f"a compressed section of {len(stream):,} bytes declares {declared:,}, more than 64x" in line
    assert "decompression bomb" in line


def test_an_lzma_graph_section_declaring_a_gigabyte_is_refused_before_inflating(tmp_path):
    import lzma

    from compression.dc.container import _LZMA_FILTERS

    packed = lzma.compress(bytes(8 * MiB), format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    assert len(packed) < 4096
    (tmp_path / "lbomb.dc").write_bytes(_container(1 << 30, bytes(32), [], packed, codec=2, graph_len=1 << 30))
    line = refused(["unpack", str(tmp_path / "lbomb.dc"), "--out", str(tmp_path / "x.tflite")])
    assert "refused" in line and "1,073,741,824 bytes" in line  # the whole file's cap says no first
    # under the whole file's cap (8 MB from about 1.3 KB), the LZMA section's own bound refuses it
    declared = 8 * MiB
    (tmp_path / "lbomb8.dc").write_bytes(_container(declared, bytes(32), [], packed, codec=2, graph_len=declared))
    line = refused(["unpack", str(tmp_path / "lbomb8.dc"), "--out", str(tmp_path / "x.tflite")])
    assert f"a compressed section of {len(packed):,} bytes declares {declared:,}, more than 64x" in line


def test_a_dense_stream_of_one_bit_codes_decodes_without_a_step_per_symbol(tmp_path):
    """32 M symbols of 1 bit each (a 4 MB file): the old decoder kept a Python list of them (over 700 MB)
    and looped per symbol; now it fits the 512 MB bound and finishes well within the timeout."""
    from compression.dc.container import _REGION, DENSE

    n = 32 * MiB
    bits = np.random.default_rng(0).integers(0, 256, n // 8, dtype=np.uint8).tobytes()
    tensor = np.unpackbits(np.frombuffer(bits, np.uint8)).tobytes()  # value 0 or 1 per byte, MSB first
    record = (_REGION.pack(0, n, 1, DENSE) + struct.pack("<I", 2) + bytes([0, 1]) + _stream([1, 1], n, bits))
    (tmp_path / "dense.dc").write_bytes(_container(n, hashlib.sha256(tensor).digest(), [record]))
    code, out, err = limited(["unpack", str(tmp_path / "dense.dc"), "--out", str(tmp_path / "x.tflite")], CLI_MB,
                             timeout=120)
    assert code == 0 and out.startswith("wrote ") and f"({n:,} B from" in out, (code, out, err[-3000:])
    assert hashlib.sha256((tmp_path / "x.tflite").read_bytes()).digest() == hashlib.sha256(tensor).digest()


@pytest.mark.parametrize("what", ["device", "pipe", "folder"])
def test_unpack_reads_only_regular_files(tmp_path, what):
    src = {"device": Path("/dev/zero"), "folder": tmp_path}.get(what, tmp_path / "fifo")
    if what == "pipe":
        os.mkfifo(src)
    line = refused(["unpack", str(src), "--out", str(tmp_path / "x.tflite")], timeout=30)  # a pipe never blocks
    assert f"is a {what}; only a regular file is read" in line


# --- broken 2: an HDF5 bomb inside the weights ------------------------------------------------------------


def _weights_h5(datasets: dict) -> bytes:
    """An HDF5 weights file whose datasets declare ``shape`` (gzip-chunked, never written: a few KB)."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for name, shape in datasets.items():
            f.create_dataset(name, shape=shape, dtype="f4", chunks=(1024, 1024), compression="gzip")
    return buf.getvalue()


def _dense_config() -> dict:
    return _model(_layer("Dense", "d", units=2))


@pytest.fixture(scope="module")
def weight_bombs(tmp_path_factory, npz_file):
    """1.5 GB and 900 MB of weights declared inside 6 KB .keras archives (the second under the 1 GB cap)."""
    folder = tmp_path_factory.mktemp("wbomb")
    out = {}
    for name, rows in (("big", 384 * 1024), ("under-cap", 225 * 1024)):
        path = _keras_zip(folder / f"{name}.keras", json.dumps(_dense_config()).encode(),
                          {"model.weights.h5": _weights_h5({"layers/d/vars/0": (rows, 1024)})}, zipfile.ZIP_DEFLATED)
        assert path.stat().st_size < 16 * 1024
        recipe = folder / f"{name}.json"
        recipe.write_text(json.dumps(tiny_recipe(npz_file, baseline={"path": str(path)})))
        out[name] = (path, recipe)
    return out


@pytest.mark.parametrize("bomb, message", [
    ("big", "big.keras declares 1.5 GB of weights; at most 1.0 GB is accepted"),
    ("under-cap", "under-cap.keras: refused, the weights '/layers/d/vars/0' declare 900 MB but the file stores"),
])
@pytest.mark.parametrize("route", ["run", "check", "inspect", "upload"])
def test_an_hdf5_bomb_inside_keras_weights_is_refused_on_every_route(weight_bombs, tmp_path, bomb, message, route):
    path, recipe = weight_bombs[bomb]
    if route in ("run", "check"):
        argv = [route, str(recipe)] + (["--out", str(tmp_path / "out"), "--quiet"] if route == "run" else [])
        assert message in refused(argv)
        assert not (tmp_path / "out").exists()
        return
    code = {  # the worker's loader starts with modelfile.inspect; the dashboard's upload check
        "inspect": f"from compression.inputs import modelfile; modelfile.inspect({str(path)!r})",
        "upload": f"from compression.studio import uploads; uploads.save_upload(open({str(path)!r}, 'rb').read(), "
                  f"{path.name!r}, 'model', {str(tmp_path / 'home')!r}, deep=False)",
    }[route]
    rc, out, err = limited(f"import compression, sys\ntry:\n    {code}\nexcept Exception as e:\n"
                           f"    print(type(e).__name__, e); sys.exit(2)", STUDIO_MB)
    assert rc == 2 and len(out.strip().splitlines()) == 1 and message in out, (rc, out, err[-2000:])
    assert not (tmp_path / "home" / "uploads").exists()


def test_the_keras3_weight_reader_judges_the_weights_before_reading(weight_bombs):
    """engine/keras3.py reads Keras 3 weights with h5py: the same check runs when it opens them."""
    src = Path(ROOT / "compression/engine/keras3.py").read_text()
    enter = src[src.index("def __enter__"):src.index("def __exit__")]
    assert "modelfile.keras_weights(" in enter and "modelfile.check_h5_weights(" in enter
    from compression.inputs import modelfile

    with zipfile.ZipFile(weight_bombs["under-cap"][0]) as z:
        with pytest.raises(ModelLoadError, match="decompression bomb"):
            with modelfile.keras_weights(z, "under-cap.keras"):
                pass


# --- broken 3: script in the offline reports, MODEL.md and the bundle ---------------------------------------


EVIL = "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def vega_cached():
    """The reports inline Vega, built by vl-convert's JavaScript runtime, which reserves far more address space
    than the bound allows: build it here, once; the subprocesses read it from its cache file."""
    from compression.studio import report_html

    report_html.vega_js()
    assert report_html._vega_cache_file().is_file()


def test_names_and_class_names_never_become_markup_in_the_reports_model_card_or_bundle(vega_cached):
    rc, out, err = limited(f"""
        import json, zipfile, io, re
        import compression
        from synthetic import fixture_report
        from compression.studio import report_html, bundle
        evil = {EVIL!r}
        prose = lambda md: re.sub(r"```json.*?```", "", md, flags=re.S)  # a fenced block shows text, never markup
        rep = fixture_report("compress")
        rep["recipe"]["name"] = evil
        rep["dataset"]["class_names"] = [evil + str(i) for i in range(10)]
        run = report_html.run_report_html(rep, name=evil)
        cmp = report_html.compare_report_html([(evil, rep), ("plain", fixture_report("prune"))])
        card = bundle.model_card(rep)
        z = zipfile.ZipFile(io.BytesIO(bundle.bundle_zip(rep, tflite=b"x", name=evil)))
        print(json.dumps({{"run_scripts": len(re.findall("<script", run)), "cmp_scripts": len(re.findall("<script", cmp)),
                          "raw_in_html": evil in run or evil in cmp or "<img src=x" in run or "<img src=x" in cmp,
                          "card_heading": card.splitlines()[0], "card_raw": "<img" in prose(card) or "</script" in prose(card),
                          "card_fences": card.count("```"), "zip_names": z.namelist(),
                          "zip_raw": "<img" in prose(z.read("MODEL.md").decode())}}))
    """, STUDIO_MB)
    assert rc == 0, err[-3000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got["run_scripts"] == 2 and got["cmp_scripts"] == 2  # Vega's bundle and the charts: nothing injected
    assert not got["raw_in_html"] and not got["card_raw"] and not got["zip_raw"]
    assert got["card_heading"].startswith("# ") and "&lt;/script&gt;" in got["card_heading"]
    assert got["card_fences"] == 2  # the recipe's own fence: nothing in the name closes it
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in got["zip_names"]), got["zip_names"]


# --- broken 4: one line instead of a traceback --------------------------------------------------------------


def test_a_class_name_that_is_a_list_gets_one_line_on_every_route(tmp_path, npz_file):
    config = _model({"class_name": ["Dense"], "config": {"name": "d", "units": 2}})
    path = _keras_zip(tmp_path / "listy.keras", json.dumps(config).encode())
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(tiny_recipe(npz_file, baseline={"path": str(path)})))
    for argv in (["check", str(recipe)], ["run", str(recipe), "--out", str(tmp_path / "out"), "--quiet"]):
        assert "class_name is a list, not a name" in refused(argv)
    top = _keras_zip(tmp_path / "top.keras", json.dumps({"class_name": ["Functional"], "config": {}}).encode())
    rc, out, err = limited(f"""
        import compression
        from compression.inputs import modelfile
        from compression.errors import UserError
        try:
            modelfile.inspect({str(top)!r})  # what the worker's loader calls first
        except UserError as e:
            print(e); raise SystemExit(2)
    """, CLI_MB)
    assert rc == 2 and out.strip() == "top.keras: the model's class_name is a list, not a class name; only Sequential " \
                                       "and functional models can be loaded", (out, err[-2000:])


@pytest.mark.parametrize("field", ["baseline.path", "dataset.npz", "--out"])
def test_a_tilde_path_naming_no_user_gets_one_line(tmp_path, npz_file, field):
    ghost = "~nosuchuser-c0ffee/x"
    r = tiny_recipe(npz_file)
    if field == "baseline.path":
        r["baseline"] = {"path": ghost + ".keras"}
    elif field == "dataset.npz":
        r["dataset"] = {"npz": ghost + ".npz"}
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(r))
    out = ghost if field == "--out" else str(tmp_path / "out")
    runs = [["run", str(recipe), "--out", out, "--quiet"]]
    for argv in runs if field == "--out" else [["check", str(recipe)], ["submit", str(recipe)]] + runs:
        line = refused(argv, env={"COMPRESSION_HOME": str(tmp_path / "home")})
        assert "names the home folder of 'nosuchuser-c0ffee', a user this machine does not have" in line, line
    assert not (tmp_path / "home" / "runs").exists() or not os.listdir(tmp_path / "home" / "runs")


def test_a_tilde_path_in_an_uploaded_recipe_gets_one_line_on_the_pipeline_page(tmp_path):
    with pytest.raises(uploads.UploadError) as err:
        uploads.confine_recipe_paths(Recipe.from_dict(_recipe(baseline={"path": "~nosuchuser-c0ffee/m.keras"})),
                                     tmp_path)
    assert one_line(err).startswith("baseline.path: ~nosuchuser-c0ffee/m.keras names the home folder")


@pytest.mark.parametrize("command", ["check", "run"])
def test_control_characters_in_a_path_are_printed_escaped(tmp_path, npz_file, command):
    evil = tmp_path / "\x1b[31mred\x07"
    r = tiny_recipe(npz_file, baseline={"path": str(evil / "m.keras")})
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(r))
    argv = [command, str(recipe)] + (["--out", str(tmp_path / "out"), "--quiet"] if command == "run" else [])
    line = refused(argv)
    assert "\\x1b[31mred\\x07" in line and "does not exist" in line


# --- weak ----------------------------------------------------------------------------------------------------


def _probe(code: str, mem_mb: int = STUDIO_MB, **kw) -> dict:
    """Run a snippet that prints one JSON object last; its exit code must be 0."""
    rc, out, err = limited(code, mem_mb, **kw)
    assert rc == 0, (out[-2000:], err[-3000:])
    return json.loads(out.strip().splitlines()[-1])


def test_a_keras2_model_with_two_inputs_is_refused_at_the_upload(tmp_path):
    import tf_keras

    a, b = tf_keras.Input((4,), name="left"), tf_keras.Input((3,), name="right")
    model = tf_keras.Model([a, b], tf_keras.layers.Dense(2)(tf_keras.layers.Concatenate()([a, b])))
    for suffix in (".keras", ".h5"):
        model.save(tmp_path / f"two{suffix}")
        got = _probe(f"""
            import json, compression
            from compression.studio import uploads
            try:
                uploads.save_upload(open({str(tmp_path / f"two{suffix}")!r}, "rb").read(), "two{suffix}", "model",
                                    {str(tmp_path / "home")!r}, deep=False)
                print(json.dumps({{"refused": None}}))
            except uploads.UploadError as e:
                print(json.dumps({{"refused": str(e)}}))
        """)
        assert got["refused"] == f"two{suffix}: the model has 2 inputs (left, right); only single-input classifiers " \
                                 "can be compressed"
    assert not (tmp_path / "home").exists()


def test_an_h5_with_thousands_of_empty_datasets_is_refused_at_once(tmp_path):
    import h5py

    path = tmp_path / "many.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["model_config"] = json.dumps(_dense_config())
        f.attrs["keras_version"] = "2.21.0"
        g = f.create_group("model_weights")
        space = h5py.h5s.create_simple((0,))
        for i in range(12_000):
            h5py.h5d.create(g.id, f"d{i}".encode(), h5py.h5t.IEEE_F32LE, space)
    got = _probe(f"""
        import json, time, compression
        from compression.studio import uploads
        t = time.perf_counter()
        try:
            uploads.check_model_file({str(path)!r})
            print(json.dumps({{"refused": None}}))
        except uploads.UploadError as e:
            print(json.dumps({{"refused": str(e), "s": time.perf_counter() - t}}))
    """, timeout=60)
    assert got["refused"] == "many.h5 holds more than 10,000 HDF5 objects; a Keras model's weights need a few hundred"


@pytest.mark.parametrize("name, stored", [("модель.keras", "upload.keras"), ("m" * 150 + ".keras", "m" * 94 + ".keras"),
                                          ("Élagage 90 %.h5", "Elagage_90.h5")])
def test_upload_names_keep_their_suffix_and_get_the_right_verdict(tmp_path, name, stored):
    import tf_keras

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
    src = tmp_path / ("m" + Path(stored).suffix)
    model.save(src)
    got = _probe(f"""
        import json, compression
        from compression.studio import uploads
        path, info = uploads.save_upload(open({str(src)!r}, "rb").read(), {name!r}, "model", {str(tmp_path / "home")!r},
                                         deep=False)
        print(json.dumps({{"name": path.name, "format": info["format"]}}))
    """)
    assert got == {"name": stored, "format": Path(stored).suffix[1:]}


def test_a_negative_npy_dimension_is_refused(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (-(2**31), 64)})
    members = {("x_train.npy" if k == "x_train" else k): v for k, v in _arrays().items()}
    members["x_train.npy"] = header.getvalue() + bytes(64)
    path = _npz(tmp_path / "neg.npz", members)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(tiny_recipe(path)))
    line = refused(["check", str(recipe)])
    assert "neg.npz: x_train.npy declares the shape [-2147483648, 64]; a dimension cannot be negative" in line
    got = _probe(f"""
        import json, compression
        from compression.studio import uploads
        try:
            uploads.save_upload(open({str(path)!r}, "rb").read(), "neg.npz", "dataset", {str(tmp_path / "h")!r}, deep=False)
        except uploads.UploadError as e:
            print(json.dumps({{"refused": str(e)}}))
    """)
    assert "a dimension cannot be negative" in got["refused"]


def test_a_5000_character_path_is_named_as_too_long_not_as_unwritable(tmp_path):
    long = "/tmp/" + "a" * 5000 + ".json"
    line = refused(["check", long])
    assert "recipe file: the path is 5,010 characters long; a path may have at most 4,096" in line
    assert "cannot write" not in line and len(line) < 300
    line = refused(["unpack", long, "--out", str(tmp_path / "x.tflite")])
    assert "the path is 5,010 characters long" in line


def test_a_float_as_large_as_1e300_is_capped_like_an_integer(tmp_path, npz_file):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(tiny_recipe(npz_file, max_train_samples=1e300)))
    for argv in (["check", str(recipe)], ["submit", str(recipe)]):
        line = refused(argv, env={"COMPRESSION_HOME": str(tmp_path / "home")})
        assert line == "error: max_train_samples: 1e+300 is far too large (at most 1e+15)"
    assert not (tmp_path / "home" / "runs").exists() or not os.listdir(tmp_path / "home" / "runs")


@pytest.mark.parametrize("step, field, message", [
    ({"method": "prune", "final_sparsity": {"fc9": 0.5}}, "steps[0].final_sparsity.fc9",
     "no layer with weights named 'fc9'; the model's layers with weights: fc1, fc2, output"),
    ({"method": "cluster", "layers": {"names": ["conv1"]}}, "steps[0].layers",
     "no layer with weights named 'conv1'; there are: fc1, fc2, output"),
    ({"method": "prune", "layers": {"types": ["Conv2D"]}}, "steps[0].layers",
     "no layer of type Conv2D; types with weights here: Dense"),
])
@pytest.mark.parametrize("baseline", ["arch", "file"])
def test_layer_names_are_checked_against_the_baseline_before_queueing(tmp_path, npz_file, step, field, message,
                                                                       baseline):
    if baseline == "arch":
        base = {"arch": "lenet_300_100"}
    else:  # a model file with the same layer names, read from its config
        import tf_keras

        model = tf_keras.Sequential([tf_keras.Input((64,)), tf_keras.layers.Dense(8, name="fc1"),
                                     tf_keras.layers.Dense(8, name="fc2"), tf_keras.layers.Dense(10, name="output")])
        model.save(tmp_path / "m.keras")
        base = {"path": str(tmp_path / "m.keras")}
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(tiny_recipe(npz_file, baseline=base, steps=[step])))
    for argv in (["check", str(recipe)], ["submit", str(recipe)],
                 ["run", str(recipe), "--out", str(tmp_path / "out"), "--quiet"]):
        assert refused(argv, env={"COMPRESSION_HOME": str(tmp_path / "home")}) == f"error: {field}: {message}"
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "home" / "runs").exists() or not os.listdir(tmp_path / "home" / "runs")  # nothing queued


FAKE_RUN = """
import sys, types
import fake_engine
sys.modules["compression.engine.pipeline"] = types.SimpleNamespace(run_recipe=fake_engine.run_recipe)
from compression.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_that_fails_in_an_earlier_runs_folder_leaves_that_run_whole(tmp_path, npz_file):
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"report.json": b'{"earlier": true}', "recipe.json": b'{"name": "earlier"}', "model.tflite": b"TFL3",
               "model.dc": b"TFLITEDC", "baseline.keras": b"PK", "notes.txt": b"mine"}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(tiny_recipe(npz_file, name="fail-late")))
    argv = [sys.executable, "-c", FAKE_RUN, "run", str(recipe), "--out", str(out), "--quiet"]
    limit = CLI_MB * MiB
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
                       env=dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}", OPENBLAS_NUM_THREADS="1"))
    assert p.returncode == 2 and error_line(p.stderr) == "error: simulated failure after the run had started writing"
    assert {f.name: f.read_bytes() for f in out.iterdir()} == earlier  # nothing deleted, nothing mixed in


def test_a_run_that_succeeds_in_an_earlier_runs_folder_replaces_it_whole(tmp_path, npz_file):
    out = tmp_path / "out"
    out.mkdir()
    for name, data in {"report.json": b"{}", "recipe.json": b"{}", "model.dc": b"old", "notes.txt": b"mine"}.items():
        (out / name).write_bytes(data)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(tiny_recipe(npz_file, name="ok", baseline={"arch": "lenet_300_100", "epochs": 1})))
    limit = CLI_MB * MiB
    p = subprocess.run([sys.executable, "-c", FAKE_RUN, "run", str(recipe), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
                       env=dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}", OPENBLAS_NUM_THREADS="1"))
    assert p.returncode == 0, p.stderr[-2000:]
    # the fake engine writes no recipe.json and no model.dc: the earlier run's went with it; the user's notes stay
    names = sorted(f.name for f in out.iterdir())
    assert "notes.txt" in names and "recipe.json" not in names and "model.dc" not in names, names
    assert (out / "notes.txt").read_bytes() == b"mine"
    assert (out / "model.tflite").read_bytes() == b"fake model.tflite"  # what the new run wrote
    assert json.loads((out / "report.json").read_text())["fake"] is True


MUTATIONS = """
def setp(path, value):
    def f(r):
        cur = r
        for k in path[:-1]:
            cur = cur[k]
        cur[path[-1]] = value
    return f

MUTATIONS = {
    "no stages": setp(["stages"], []), "stages null": setp(["stages"], None), "stages not dicts": setp(["stages"], ["x"]),
    "final missing": lambda r: r.pop("final"), "final empty": setp(["final"], {}), "final a list": setp(["final"], [1]),
    "baseline null": setp(["baseline"], None), "baseline metrics missing": lambda r: r["baseline"].pop("metrics"),
    "dataset missing": lambda r: r.pop("dataset"), "dataset a list": setp(["dataset"], [1]),
    "class names numbers": setp(["dataset", "class_names"], list(range(10))),
    "class names short": setp(["dataset", "class_names"], ["a"]),
    "class names nested": setp(["dataset", "class_names"], [["a"], {"b": 1}] + [str(i) for i in range(8)]),
    "recall nulls": setp(["final", "per_class_recall"], [None] * 10),
    "recall text": setp(["final", "per_class_recall"], ["x"] * 10),
    "accuracy text": setp(["final", "accuracy"], "high"), "accuracy null": setp(["final", "accuracy"], None),
    "latency null": setp(["final", "latency_ms"], None), "layers null": setp(["final", "layers"], None),
    "layer rows empty": setp(["final", "layers"], [{}]), "recipe missing": lambda r: r.pop("recipe"),
    "recipe a list": setp(["recipe"], [1]), "steps null": setp(["recipe", "steps"], None),
    "steps an object": setp(["recipe", "steps"], {"method": "prune"}), "steps text": setp(["recipe", "steps"], ["prune"]),
    "unknown method": setp(["recipe", "steps"], [{"method": "teleport"}]),
    "stage without method": lambda r: r["stages"][0].pop("method"),
    "stage metrics null": lambda r: r["stages"][0].__setitem__("metrics", None),
    "dc rows odd": setp(["final", "dc"], {"tensors": [{"layer": None, "bytes": "x"}], "dc_bytes": None}),
    "dc null": setp(["final", "dc"], None), "export null": setp(["final", "export"], None),
    "versions a list": setp(["versions"], ["tf"]), "n_test text": setp(["dataset", "n_test"], "many"),
    "num_classes text": setp(["dataset", "num_classes"], "ten"), "input a list": setp(["input"], ["x"]),
    "input shape text": setp(["input", "shape"], "28x28"), "value range text": setp(["input", "value_range"], ["a", "b"]),
    "architecture null": setp(["baseline", "architecture"], None),
    "architecture rows odd": setp(["baseline", "architecture"], [{"name": "x", "output_shape": None, "params": "many"}]),
    "undone text": setp(["undone"], "all"), "sparsity huge": setp(["final", "sparsity"], 1e308),
    "timing null": setp(["timing"], None), "params a list": setp(["final", "params_total"], [1]),
    "nan accuracy": setp(["final", "accuracy"], float("nan")),
}
"""


def test_odd_but_valid_reports_never_raise_in_charts_health_bundle_or_html(tmp_path, vega_cached):
    got = _probe(MUTATIONS + """
import json, traceback
import compression
from synthetic import fixture_report
from compression.studio import bundle, charts, health, report_html

def everything(rep):  # the pages' and the downloads' readers (the HTML report draws every chart again)
    charts.stage_display(charts.stage_table(rep)); charts.architecture_df(rep); health.short_mark(health.assess(rep))
    bundle.bundle_zip(rep, tflite=b"x"); bundle.labels_txt(rep)
    report_html.run_report_html(rep)

raised, odd = {}, []
for name, mutate in MUTATIONS.items():
    rep = fixture_report("compress")
    mutate(rep)
    odd.append((name, rep))
    try:
        everything(rep)
    except Exception as e:
        raised[name] = f"{type(e).__name__}: {e}"
try:  # Compare: every odd report side by side with a good one
    report_html.compare_report_html(odd + [("ok", fixture_report("prune"))])
except Exception as e:
    raised["compare"] = f"{type(e).__name__}: {e}"
print(json.dumps({"tried": len(MUTATIONS), "raised": raised}))
""", timeout=300)
    assert got["tried"] >= 40 and got["raised"] == {}


def _page_probe(home: Path, pages: list[str], env: dict | None = None) -> dict:
    """Render pages with AppTest in a subprocess under the memory bound; their markdown, errors, buttons."""
    return _probe(f"""
import json, os
from streamlit.testing.v1 import AppTest
from synthetic import page_errors
out = {{}}
for page in {pages!r}:
    at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=60)
    at.run()
    at.switch_page(page).run()
    out[page] = {{"markdown": [m.value for m in at.markdown], "errors": page_errors(at),
                 "buttons": [b.label for b in at.button], "links": [getattr(l, "label", "") for l in at.get("page_link")],
                 "exception": [str(e.value) for e in at.exception]}}
print(json.dumps(out))
""", mem_mb=2048, timeout=300, env=dict({"COMPRESSION_HOME": str(home), "COMPRESSION_EMBEDDED_WORKER": "0"},
                                        **(env or {})))


def test_job_names_with_html_render_as_text_on_home_and_runs(tmp_path):
    from synthetic import install_run, make_workspace

    home = tmp_path / "home"
    make_workspace(home)
    install_run(home, "20260102-000000-00aaaa", "compress", name="<img src=x onerror=alert(1)> **bold** :red[x]")
    got = _page_probe(home, ["views/home.py", "views/runs.py"])
    for page, seen in got.items():
        text = " ".join(seen["markdown"])
        assert "&lt;img src=x onerror=alert(1)&gt;" in text, page
        assert "<img" not in text and "**bold**" not in text and ":red[x]" not in text, page
        assert not seen["errors"] and not seen["exception"], (page, seen["errors"], seen["exception"])


def test_one_damaged_report_never_breaks_the_runs_page(tmp_path):
    from synthetic import install_run, make_workspace

    home = tmp_path / "home"
    make_workspace(home)
    job = install_run(home, "20260102-000000-00bbbb", "compress", name="odd-report")
    report = json.loads((Path(job["run_dir"]) / "report.json").read_text())
    report.update(stages=["x"], final=[1], dataset=[1], recipe={"steps": {"method": "prune"}})
    (Path(job["run_dir"]) / "report.json").write_text(json.dumps(report))
    got = _page_probe(home, ["views/runs.py", "views/compare.py", "views/results.py"])
    for page, seen in got.items():
        assert not seen["errors"] and not seen["exception"], (page, seen["errors"], seen["exception"])


def _running_job(home: Path, job_id: str, pid: int, cancel_asked_s_ago: float | None = None) -> Path:
    """A ``running`` record on this host for process ``pid`` (dead or alive), with an overdue cancel if asked."""
    from synthetic import write_job

    from compression.jobs.records import HOST, proc_stat

    folder = home / "runs" / job_id
    write_job(folder, job_id, _recipe(name="job"), "running", progress=0.3, stage="baseline")
    status = json.loads((folder / "status.json").read_text())
    stat = proc_stat(pid)
    status.update(host=HOST, pid=pid, pid_start=stat[1] if stat else None, killable=True,
                  heartbeat_at=status["started_at"])
    (folder / "status.json").write_text(json.dumps(status))
    if cancel_asked_s_ago is not None:
        (folder / "cancel").write_text("asked\n")
        t = time.time() - cancel_asked_s_ago
        os.utime(folder / "cancel", (t, t))
    return folder


HOLD_LOCK = "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); " \
            "time.sleep(120)"


def test_read_only_mode_writes_nothing_kills_nothing_and_starts_no_worker(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    home = tmp_path / "home"
    dead = _running_job(home, "20260101-000000-00dead", pid=2**22 + 17)  # no such process: its worker died
    hung = home / "runs" / "20260101-000001-0c0ffe"
    hung.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(hung / ".running")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # a job process that ignores its cancel
        _running_job(home, hung.name, pid=holder.pid, cancel_asked_s_ago=600)
        before = {p: p.read_bytes() for p in (dead / "status.json", hung / "status.json")}
        got = _probe(f"""
            import json, os
            import compression
            from compression.studio import dashboard
            os.environ["COMPRESSION_HOME"] = {str(empty)!r}
            jobs_empty = dashboard.list_jobs()
            created = os.path.exists({str(empty / "runs")!r})
            os.environ["COMPRESSION_HOME"] = {str(home)!r}
            states = {{j["id"][-6:]: j["state"] for j in dashboard.list_jobs()}}
            hung = dashboard.get_job("20260101-000001-0c0ffe")
            started = dashboard.ensure_worker()
            print(json.dumps({{"empty": jobs_empty, "created": created, "states": states, "hung": hung["state"],
                              "started": started, "files": sorted(os.listdir({str(home)!r}))}}))
        """, env={"COMPRESSION_READ_ONLY": "1", "COMPRESSION_CANCEL_GRACE": "1"})
        assert got["empty"] == [] and got["created"] is False  # list_jobs created no runs/ folder
        assert got["states"]["00dead"] == "failed"  # the verdict is shown ...
        assert {p: p.read_bytes() for p in before} == before  # ... but no record is rewritten
        assert got["hung"] == "running" and holder.poll() is None  # an overdue cancel kills nothing
        assert got["started"] is False and got["files"] == ["runs"]  # no worker, no lock, no queue
    finally:
        holder.kill()
        holder.wait()
