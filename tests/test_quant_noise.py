"""Extreme quantization: 4- and 2-bit weights, Quant-Noise (quantize and cluster), iterative product
quantization, the int4 file and model.dc's blocks encoding; bad settings refused in one line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from compression import dc
from compression.errors import ContainerError, RecipeError
from compression.recipe import Recipe
from compression.recipe.blocks import KernelInfo, plan_blocks
from compression.recipe.ordering import plan
from conftest import ROOT, tiny_recipe
from independent import distinct_per_channel, litert_kernels

PRUNE = {"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.8, "epochs": 1, "batch_size": 32}


def recipe(steps, export="int8_full", **kw):
    return Recipe.from_dict({"dataset": "digits", "baseline": {"arch": "lenet_300_100"}, "steps": steps,
                             "export": export, **kw})


# --- declarations: one-line refusals, what the planner says -----------------------------------------


@pytest.mark.parametrize("step, field, words", [
    ({"method": "quantize", "weight_bits": 3}, "steps[0].weight_bits", "3 is not one of 8, 4, 2"),
    ({"method": "quantize", "weight_bits": 4, "quant_noise": 1.5}, "steps[0].quant_noise", "1.5 is outside [0, 1]"),
    ({"method": "cluster", "quant_noise": 1.5}, "steps[0].quant_noise", "1.5 is outside [0, 1]"),
    ({"method": "pq", "quant_noise": 1.0}, "steps[0].quant_noise", "is outside [0, 1)"),
    ({"method": "quantize", "train": False, "quant_noise": 0.2}, "steps[0].quant_noise", "with train false"),
    ({"method": "pq", "codebook_size": 300}, "steps[0].codebook_size", "above the maximum 256"),
])
def test_bad_settings_are_refused_in_one_line(step, field, words):
    export = "float32" if step["method"] in ("pq", "cluster") else "int8_full"
    with pytest.raises(RecipeError) as err:
        recipe([step], export=export)
    text = str(err.value)
    assert text.startswith(field) and words in text and "\n" not in text


def test_pq_runs_alone_in_float_files_and_says_why_in_one_line():
    with pytest.raises(RecipeError, match=r"^steps\[1\]\.method: pq runs alone: with prune") as err:
        recipe([PRUNE, {"method": "pq"}], export="float32")
    assert "\n" not in str(err.value)
    with pytest.raises(RecipeError, match=r"^export: pq stores its codewords in float32 or float16"):
        recipe([{"method": "pq"}], export="int8_dynamic")
    # with allow_unsafe_order the planner runs it and says, from the facts, what it undoes
    unsafe = recipe([PRUNE, {"method": "pq"}], export="float32", allow_unsafe_order=True)
    assert any("pruned zeros come back" in w for w in plan(unsafe)[1].warnings)
    later = recipe([{"method": "pq"}, PRUNE], export="float32", allow_unsafe_order=True)
    assert any("codeword" in w for w in plan(later)[1].warnings)


def test_the_planner_says_quant_noise_keeps_pruned_weights_at_zero():
    steps = plan(recipe([PRUNE, {"method": "quantize", "weight_bits": 4, "quant_noise": 0.5}]))
    assert steps[1].variant == "quant_noise"
    assert "4-bit weights (15 levels" in steps[1].description and "held at zero" in steps[1].description
    clustered = plan(recipe([PRUNE, {"method": "cluster", "quant_noise": 0.3}], export="float32"))[1]
    assert clustered.variant == "sparsity_preserving_cluster" and "Quant-Noise" in clustered.description
    assert plan(recipe([{"method": "quantize", "weight_bits": 2, "train": False}]))[0].variant == "rounded"
    assert plan(recipe([{"method": "quantize", "weight_bits": 2}]))[0].variant == "qat_lowbit"
    assert plan(recipe([{"method": "quantize"}]))[0].variant == "qat"  # int8 QAT is tfmot's, as before


def test_training_low_bit_weights_after_clustering_is_refused():
    cluster = {"method": "cluster", "number_of_clusters": 16}
    with pytest.raises(RecipeError, match=r"^steps\[1\]\.weight_bits: training the weights after clustering"):
        recipe([cluster, {"method": "quantize", "weight_bits": 4}])
    recipe([cluster, {"method": "quantize", "weight_bits": 4, "train": False}])  # rounding keeps the clusters


KERNELS = [KernelInfo("fc1", "Dense", (784, 300)), KernelInfo("fc2", "Dense", (300, 100)),
           KernelInfo("output", "Dense", (100, 10))]


def test_a_block_size_fits_the_layers_it_divides_and_is_refused_when_it_divides_none():
    names = {k.name for k in KERNELS}
    fits = plan_blocks(KERNELS, names, "steps[0]", "block_size", lambda n: 8, set())
    assert list(fits.layers) == ["fc1"] and len(fits.notes) == 2 and "300 weights per output channel" in fits.notes[0]
    with pytest.raises(RecipeError) as err:
        plan_blocks(KERNELS, names, "steps[0]", "block_size", lambda n: 64, set())
    assert str(err.value) == ("steps[0].block_size: 64 divides no chosen kernel's weights per output channel "
                              "(fc1 784, fc2 300, output 100)")
    with pytest.raises(RecipeError, match=r"^steps\[0\]\.block_size\.fc2: 8 does not divide"):
        plan_blocks(KERNELS, names, "steps[0]", "block_size", lambda n: 8, {"fc2"})


def test_a_codebook_larger_than_the_blocks_leaves_the_layer_out_or_is_refused():
    names = {k.name for k in KERNELS}
    fits = plan_blocks(KERNELS, names, "w", "block_size", lambda n: 4, set(), "codebook_size", lambda n: 256)
    assert set(fits.layers) == {"fc1", "fc2"} and "250 blocks of 4 weights, fewer than 256" in fits.notes[0]
    with pytest.raises(RecipeError) as err:
        plan_blocks(KERNELS, {"output"}, "w", "block_size", lambda n: 4, set(), "codebook_size", lambda n: 256)
    assert str(err.value) == "w.codebook_size: 256 codewords is more than the blocks of every chosen layer (blocks: output 250)"
    with pytest.raises(RecipeError, match=r"^w\.codebook_size\.output: 256 codewords for output, which has only 250"):
        plan_blocks(KERNELS, names, "w", "block_size", lambda n: 4, set(), "codebook_size", lambda n: 256,
                    frozenset({"output"}))


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "compression", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def check_in_process(path, capsys) -> tuple[int, str, str]:
    """``python -m compression check PATH`` in this process (TensorFlow already loaded): code, stdout, stderr."""
    from compression.cli.main import main

    capsys.readouterr()
    code = main(["check", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_refuses_bad_parameters_in_one_line_with_exit_2(tmp_path, tiny_npz, capsys):
    cases = {
        "bits": ({"method": "quantize", "weight_bits": 3}, "int8_full", "steps[0].weight_bits: 3 is not one of"),
        "noise": ({"method": "quantize", "weight_bits": 4, "quant_noise": 1.5}, "int8_full",
                  "steps[0].quant_noise: 1.5 is outside"),
        # the tiny model's kernels have 64, 300 and 100 weights per output channel
        "block": ({"method": "pq", "block_size": 7}, "float32", "steps[0].block_size: 7 divides no chosen kernel"),
        "codebook": ({"method": "pq", "block_size": 4, "codebook_size": 256, "layers": {"names": ["output"]}},
                     "float32", "steps[0].codebook_size: 256 codewords is more than the blocks of every chosen layer"),
        "noise_block": ({"method": "quantize", "weight_bits": 4, "quant_noise": 0.5, "quant_noise_block_size": 7},
                        "int8_full", "steps[0].quant_noise_block_size: 7 divides no chosen kernel"),
    }
    for n, (name, (step, export, words)) in enumerate(cases.items()):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(tiny_recipe(tiny_npz, [step], export=export)))
        if n == 0:  # the real command once: its exit status
            out = cli("check", path)
            code, stderr = out.returncode, out.stderr
        else:  # the rest in this process (each subprocess would load TensorFlow again)
            code, _stdout, stderr = check_in_process(path, capsys)
        assert code == 2, (name, stderr)
        lines = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and words in lines[0], (name, stderr[-2000:])
    fine = tmp_path / "fine.json"
    fine.write_text(json.dumps(tiny_recipe(tiny_npz, [{"method": "pq", "block_size": 4, "codebook_size": 64}],
                                           export="float32")))
    code, stdout, stderr = check_in_process(fine, capsys)
    assert code == 0, stderr
    assert "pq -> pq" in stdout


# --- the wrappers, on their own -------------------------------------------------------------------


def test_the_grid_has_its_levels_per_channel_and_keeps_zero():
    from compression.engine.quantnoise import rows_of, to_grid

    rng = np.random.default_rng(0)
    k = rng.normal(0, 0.1, (64, 32)).astype(np.float32)
    k[rng.random(k.shape) < 0.5] = 0
    for bits, levels in ((8, 255), (4, 15), (2, 3)):
        q = to_grid(k, bits, per_channel=True)
        assert max(np.unique(col).size for col in rows_of(q).T) <= levels
        assert np.all(q[k == 0] == 0)
        assert np.allclose(np.abs(q).max(axis=0), np.abs(k).max(axis=0))  # the largest weight is a level
        whole = to_grid(k, bits, per_channel=False)
        assert np.unique(whole).size <= levels


@pytest.fixture(scope="module")
def dense():
    import tf_keras

    rng = np.random.default_rng(1)
    layer = tf_keras.layers.Dense(6, name="fc")
    layer.build((None, 16))
    kernel = rng.normal(0, 0.3, (16, 6)).astype(np.float32)
    kernel[:4] = 0  # "pruned"
    layer.set_weights([kernel, np.zeros(6, np.float32)])
    return layer, kernel


def _noise(dense, p, block=1, mask=True):
    import tf_keras

    from compression.engine.quantnoise import wrappers

    layer, kernel = dense
    fresh = tf_keras.layers.Dense.from_config(layer.get_config())
    wrapper = wrappers()["ScalarNoise"](fresh, p, block, 2, True, (kernel != 0) if mask else None)
    wrapper.build((None, 16))
    fresh.set_weights(layer.get_weights())
    return wrapper


def test_quant_noise_quantizes_a_share_of_whole_blocks_with_straight_through_gradients(dense):
    import tensorflow as tf

    from compression.engine.quantnoise import to_grid

    layer, kernel = dense
    grid = to_grid(kernel, 2, True)
    assert np.allclose(_noise(dense, 0.0)._kernel(True).numpy(), kernel)  # p = 0: the float weights
    assert np.allclose(_noise(dense, 1.0)._kernel(True).numpy(), grid)  # p = 1: QAT
    assert np.allclose(_noise(dense, 0.3)._kernel(False).numpy(), grid)  # outside training: all quantized
    tf.random.set_seed(0)
    w = _noise(dense, 0.5, block=4)
    drawn = [np.isclose(w._kernel(True).numpy(), grid) & ~np.isclose(kernel, grid) for _ in range(20)]
    share = np.mean([d[4:].sum() / max(1, (~np.isclose(kernel, grid))[4:].sum()) for d in drawn])
    assert 0.3 < share < 0.7
    # a drawn block is drawn whole: 4 consecutive inputs of one output channel
    mask = w.block_mask(0.5, 4, True).numpy()
    assert np.all(mask.reshape(4, 4, 6).min(axis=1) == mask.reshape(4, 4, 6).max(axis=1))
    # straight-through: the gradient reaches every kept weight as if nothing were quantized; pruned ones get none
    x = tf.constant(np.random.default_rng(2).random((8, 16)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(w(x, training=True))
    grad = tape.gradient(loss, w.kernel_var).numpy()
    expected = np.tile(x.numpy().sum(axis=0)[:, None], (1, 6))
    assert np.allclose(grad[4:], expected[4:], rtol=1e-5) and np.all(grad[:4] == 0)


def test_product_quantized_kernel_is_its_codewords_and_codewords_get_mean_gradients():
    import tensorflow as tf
    import tf_keras

    from compression.engine.quantnoise import blocks_of, from_blocks, kmeans_blocks, wrappers

    rng = np.random.default_rng(3)
    kernel = rng.normal(0, 0.2, (5, 3, 4, 8)).astype(np.float32)  # conv 5x3, 4 -> 8: 60 weights per channel
    book, assign = kmeans_blocks(blocks_of(kernel, 6), 16, 10, rng)
    assert np.allclose(from_blocks(blocks_of(kernel, 6), kernel.shape), kernel)  # the layout round-trips
    conv = tf_keras.layers.Conv2D(8, (5, 3))
    conv.build((None, 9, 9, 4))
    pq = wrappers()["PQKernel"](conv, book, assign)
    pq.build((None, 9, 9, 4))
    rebuilt = pq._kernel(True).numpy()
    assert np.allclose(rebuilt, from_blocks(book[assign], kernel.shape))
    assert np.unique(blocks_of(rebuilt, 6), axis=0).shape[0] <= 16
    trainable = {id(w) for w in pq.trainable_weights}
    assert id(conv.kernel) not in trainable and id(pq.codebook) in trainable
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(pq._kernel(True))
    grad = tape.gradient(loss, pq.codebook).numpy()
    counts = np.bincount(assign, minlength=16)
    assert np.allclose(grad[counts > 0], 1.0)  # d(sum)/d(codeword) summed over its blocks, divided by their number


# --- whole recipes on tiny data: read back from the files -----------------------------------------


@pytest.fixture(scope="module")
def noise_run(tiny_npz, tmp_path_factory):
    from compression.engine.pipeline import run_recipe

    out = tmp_path_factory.mktemp("qn4")
    step = {"method": "quantize", "weight_bits": 4, "quant_noise": 0.5, "epochs": 1, "batch_size": 32}
    report = run_recipe(Recipe.from_dict(tiny_recipe(tiny_npz, [PRUNE, step], export="int8_full")), out)
    return out, report


def test_4_bit_quant_noise_after_pruning_leaves_15_levels_per_channel_and_no_revived_weight(noise_run):
    out, report = noise_run
    stage = report["stages"][1]
    assert stage["variant"] == "quant_noise" and stage["stats"]["levels"]["achieved"] <= 15
    found = litert_kernels((out / "model.tflite").read_bytes())  # LiteRT's own reading of the file
    assert [k["dtype"] for k in found] == [np.int8] * 3
    for k, row in zip(found, report["final"]["layers"]):
        assert distinct_per_channel(k["values"], k["per_channel_axis"]) <= 15
        assert row["unique_values_per_channel"] == distinct_per_channel(k["values"], k["per_channel_axis"])
        assert row["sparsity"] == pytest.approx(0.8, abs=0.01) and row["revived"] == 0
    # model.dc charges the real bits: about 4 a weight for 15 levels, fewer where pruned zeros are many
    for t in report["final"]["dc"]["tensors"]:
        assert t["weight_bits"] + t["index_bits"] * (t["encoding"] == "sparse") < 8


def test_the_int4_file_holds_the_trained_levels_as_int4_and_litert_runs_it(noise_run):
    from compression.engine import models
    from compression.engine.metrics import keras_weights
    from compression.tflite.reader import INT4, read

    out, report = noise_run
    blob = (out / "model_int4.tflite").read_bytes()
    assert report["artifacts"]["int4"] == "model_int4.tflite" and report["final"]["int4_bytes"] == len(blob)
    assert sum(t.type == INT4 for t in read(blob).tensors) == 3
    int4 = report["final"]["int4"]
    assert all(row["unique_values_per_channel"] <= 15 for row in int4["layers"])
    assert int4["accuracy"] > 0.5
    # LiteRT reads the int4 tensors as the studio's reader does, and they dequantize to the Keras kernels
    trained = {lw.name: lw.kernel for lw in keras_weights(models.load_model(out / "model.keras"))}
    for k, name in zip(litert_kernels(blob), ["fc1", "fc2", "output"]):
        assert k["values"].min() >= -7 and k["values"].max() <= 7
        assert np.allclose(k["float"], trained[name].T, atol=1e-6)
    assert report["final"]["int4_bytes"] < 0.7 * report["final"]["tflite_bytes"]  # two weights a byte


def test_2_bit_qat_through_a_tfmot_config_stores_three_levels(tiny_npz, tmp_path):
    from compression.engine.pipeline import run_recipe

    step = {"method": "quantize", "weight_bits": 2, "granularity": "per_tensor", "epochs": 1, "batch_size": 32}
    report = run_recipe(Recipe.from_dict(tiny_recipe(tiny_npz, [step], export="int8_full")), tmp_path)
    assert report["stages"][0]["variant"] == "qat_lowbit"
    for k in litert_kernels((tmp_path / "model.tflite").read_bytes()):
        assert distinct_per_channel(k["values"], k["per_channel_axis"]) <= 3
    assert all(row["unique_values"] <= 3 for row in report["final"]["int4"]["layers"])  # per layer: 3 in all


def test_clustering_with_quant_noise_keeps_the_sparsity_and_the_clusters(tiny_npz, tmp_path):
    from compression.engine.pipeline import run_recipe

    step = {"method": "cluster", "number_of_clusters": 8, "quant_noise": 0.5, "epochs": 1, "batch_size": 32}
    report = run_recipe(Recipe.from_dict(tiny_recipe(tiny_npz, [PRUNE, step], export="float32")), tmp_path)
    stage = report["stages"][1]
    assert stage["variant"] == "sparsity_preserving_cluster"
    for row in report["final"]["layers"]:
        assert row["sparsity"] == pytest.approx(0.8, abs=0.01)
        assert row["unique_values"] <= 8 + 1  # the centroids and the pruned zeros
    assert report["undone"] == []


def test_pq_stores_codes_and_codebooks_in_model_dc(tiny_npz, tmp_path):
    from compression.engine.pipeline import run_recipe

    step = {"method": "pq", "block_size": {"fc1": 8}, "codebook_size": {"output": 64}, "quant_noise": 0.1,
            "pretrain_epochs": 1, "epochs": 1, "batch_size": 32, "kmeans_iterations": 5}
    report = run_recipe(Recipe.from_dict(tiny_recipe(tiny_npz, [step], export="float32")), tmp_path)
    stage = report["stages"][0]
    assert stage["variant"] == "pq_noise"
    per_layer = stage["stats"]["codebook_size"]["per_layer"]
    assert {n: (v["block_size"], v["target"]) for n, v in per_layer.items()} == \
        {"fc1": (8, 256), "fc2": (4, 256), "output": (4, 64)}
    assert all(v["achieved"] <= v["target"] for v in per_layer.values())
    size = stage["stats"]["pq_bytes"]
    assert size["achieved"] == size["codes"] + size["codebooks"] < size["float32_bytes"] / 8
    tfl = (tmp_path / "model.tflite").read_bytes()
    blob = (tmp_path / "model.dc").read_bytes()
    assert dc.decode(blob) == tfl
    rows = {t["layer"]: t for t in report["final"]["dc"]["tensors"]}
    for name, v in per_layer.items():
        t = rows[name]
        # never more than the codes at log2(codebook) bits plus the float32 codebook (and a record header)
        assert t["bytes"] <= v["codes_bytes"] + v["codebook_bytes"] + 64, (name, t["encoding"])
        if t["encoding"] == "blocks":  # a small layer may compress better as raw bytes
            assert t["block"] == v["block_size"] and t["codebook_values"] <= v["target"]
            assert t["weight_bytes"] <= (v["blocks"] * v["code_bits"] + 7) // 8  # Huffman where it is fewer
            assert t["codebook_bytes"] >= t["codebook_values"] * v["block_size"] * 4
    assert [rows[n]["encoding"] for n in ("fc1", "fc2")] == ["blocks", "blocks"]
    # the whole file: the true size of codes + codebooks and the rest of the file (graph, biases), no more
    acc = report["final"]["dc"]
    assert report["final"]["dc_bytes"] <= size["achieved"] + acc["graph_bytes"] + 64 * len(per_layer)


# --- model.dc: the blocks encoding --------------------------------------------------------------


def test_blocks_encoding_round_trips_and_refuses_a_damaged_record():
    import struct

    from compression.dc.container import BLOCKS, _Blob, _decode_tensor, _encode_tensor

    rng = np.random.default_rng(4)
    for dtype, item in ((np.float32, 4), (np.float16, 2), (np.int8, 1)):
        book = (rng.integers(-128, 128, (40, 4)) if dtype == np.int8 else rng.normal(0, 1, (40, 4))).astype(dtype)
        raw = book[rng.integers(0, 40, 3000)].tobytes()
        body, st = _encode_tensor(raw, item)
        assert st["encoding"] == BLOCKS and st["block"] == 4 and st["codebook_values"] == 40
        out = bytearray(len(raw) + 8)  # decoded in place, at an offset, into a buffer of zeros
        _decode_tensor(_Blob(body, 0), out, 8, len(raw), item, BLOCKS)
        assert out[8:] == raw and out[:8] == bytes(8)
        assert len(body) < 40 * 4 * item + 3000 * 6 / 8 + 64  # codebook + at most 6 bits a block
    raw = rng.normal(0, 1, (32, 4)).astype(np.float32)[rng.integers(0, 32, 5000)].tobytes()
    body, _ = _encode_tensor(raw, 4)
    for bad in (struct.pack("<B", 1) + body[1:], body[:1] + struct.pack("<I", 10**9) + body[5:], body[:30]):
        with pytest.raises(ContainerError) as err:
            _decode_tensor(_Blob(bad, 0), bytearray(len(raw)), 0, len(raw), 4, BLOCKS)
        assert "\n" not in str(err.value)


def test_later_stages_undoing_product_quantization_are_said():
    from compression.recipe.figures import undone_sentences

    def m(distinct):
        return {"sparsity": 0.0, "layers": [{"name": "fc1", "unique_values": distinct}]}

    stages = [{"method": "pq", "metrics": m(512)}, {"method": "prune", "metrics": m(20000)}]
    said = undone_sentences(stages, m(50000), m(20000))
    assert said and said[0].startswith("prune undid product quantization")
