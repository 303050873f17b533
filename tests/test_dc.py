"""Deep Compression container (model.dc): Huffman coder, TFLite reader, lossless round trip,
damaged files, the `unpack` command and the "where the bits go" chart."""

import hashlib
import io
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

from compression import dc
from compression.cli.main import main
from compression.dc import huffman
from compression.dc.container import MAGIC
from compression.tflite import layer_of
from compression.tflite import read as read_tflite
from compression.errors import ContainerError, TFLiteFileError
from compression.studio import charts

from conftest import ROOT

MODES = ["float32", "float16", "int8_dynamic", "int8_full"]


# --- Huffman -------------------------------------------------------------------------------


def test_huffman_lengths_are_optimal_and_codes_canonical():
    counts = np.array([5, 0, 3, 1, 1, 9])
    lengths = huffman.code_lengths(counts)
    assert lengths.tolist() == [2, 0, 3, 4, 4, 1]
    assert huffman.stream_bits(counts, lengths) == 36  # 2 + 5 + 10 + 19: the Huffman merge costs
    codes = huffman.canonical_codes(lengths)
    as_bits = {s: format(int(codes[s]), f"0{lengths[s]}b") for s in np.flatnonzero(lengths)}
    assert as_bits == {5: "0", 0: "10", 2: "110", 3: "1110", 4: "1111"}


def test_huffman_round_trip_and_length_limit():
    rng = np.random.default_rng(0)
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman.code_lengths(np.array(fib))  # optimal depth would be 29
    assert lengths.max() <= huffman.MAX_CODE_BITS and huffman.kraft_ok(lengths)
    symbols = rng.choice(30, size=5000, p=np.array(fib) / sum(fib))
    data, nbits = huffman.encode(symbols, lengths)
    assert nbits == huffman.stream_bits(np.bincount(symbols, minlength=30), lengths)
    assert np.array_equal(huffman.decode(data, nbits, lengths, symbols.size), symbols)
    assert np.array_equal(huffman.unpack_lengths(huffman.pack_lengths(lengths), 30), lengths)


def test_huffman_single_symbol_and_empty_streams():
    lengths = huffman.code_lengths(np.array([0, 0, 7]))
    assert lengths.tolist() == [0, 0, 1]
    data, nbits = huffman.encode(np.full(7, 2), lengths)
    assert nbits == 7 and np.array_equal(huffman.decode(data, nbits, lengths, 7), np.full(7, 2))
    assert huffman.code_lengths(np.zeros(4, dtype=int)).tolist() == [0, 0, 0, 0]
    assert huffman.encode(np.zeros(0, dtype=int), lengths) == (b"", 0)
    assert huffman.decode(b"", 0, lengths, 0).size == 0
    with pytest.raises(ContainerError):
        huffman.decode(data, nbits, lengths, 8)  # more symbols than bits


# --- TFLite files from a tiny model ------------------------------------------------------------


@pytest.fixture(scope="module")
def exports():
    """{(variant, mode): tflite bytes} for a plain and a pruned+clustered tiny Dense model."""
    import tf_keras

    from compression.engine.export import to_tflite

    rng = np.random.default_rng(0)
    inputs = tf_keras.Input((16, 16))
    x = tf_keras.layers.Flatten()(inputs)
    x = tf_keras.layers.Dense(128, activation="relu", name="fc1")(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10, activation="softmax", name="output")(x))
    x_rep = rng.random((20, 16, 16)).astype(np.float32)
    out = {("plain", m): to_tflite(model, m, x_rep) for m in MODES}
    weights = model.get_weights()
    for i in (0, 2):  # kernels: 90% zeros, 16 distinct values (pruning and clustering by hand)
        centroids = rng.normal(0, 0.1, 16).astype(np.float32)
        w = centroids[rng.integers(0, 16, weights[i].shape)]
        w[rng.random(w.shape) < 0.9] = 0
        # every output unit holds the largest centroid once, so per-channel int8 scales agree and
        # the int8 files keep 16 distinct values per tensor too
        w[0, :] = centroids[np.argmax(np.abs(centroids))]
        weights[i] = w
    model.set_weights(weights)
    out.update({("clustered", m): to_tflite(model, m, x_rep) for m in MODES})
    return out


@pytest.fixture(scope="module")
def encoded(exports):
    return {key: dc.encode(tfl, ["fc1", "output"]) for key, tfl in exports.items()}


def test_reader_agrees_with_tensorflow(exports):
    from tensorflow.lite.tools import flatbuffer_utils

    for key in [("plain", "float32"), ("clustered", "int8_full")]:
        tfl = exports[key]
        mine = read_tflite(tfl)
        ref = flatbuffer_utils.convert_bytearray_to_object(bytearray(tfl))
        assert [b.length for b in mine.buffers] == [0 if b.data is None else len(b.data) for b in ref.buffers]
        for b in mine.buffers:
            if b.length:
                assert tfl[b.offset:b.offset + b.length] == bytes(ref.buffers[b.index].data)
        assert [(t.name, list(t.shape), t.type, t.buffer) for t in mine.tensors] == \
            [(t.name.decode(), list(t.shape), t.type, t.buffer) for t in ref.subgraphs[0].tensors]
        quantized = [t for t in mine.tensors if t.scale]
        assert (key[1] == "int8_full") == bool(quantized)


@pytest.mark.parametrize("variant", ["plain", "clustered"])
@pytest.mark.parametrize("mode", MODES)
def test_round_trip_is_byte_identical(exports, encoded, variant, mode):
    tfl = exports[(variant, mode)]
    blob, acc = encoded[(variant, mode)]
    assert hashlib.sha256(dc.decode(blob)).digest() == hashlib.sha256(tfl).digest()
    assert acc["dc_bytes"] == len(blob) and acc["tflite_bytes"] == len(tfl)
    assert acc["graph_bytes"] + sum(t["bytes"] for t in acc["tensors"]) == len(blob)
    assert [t["layer"] for t in acc["tensors"]] == ["fc1", "output"]  # the one matcher, in model order
    for t in acc["tensors"]:
        assert t["index_bytes"] + t["weight_bytes"] + t["codebook_bytes"] == t["bytes"]
        assert t["encoding"] in ("sparse", "dense", "raw")
        # bits are counted per what each encoding stores: per kept weight when sparse, per weight otherwise
        per = t["weights"] * t["kept_pct"] / 100 if t["encoding"] == "sparse" else t["weights"]
        assert t["bits_per"] == ("kept weight" if t["encoding"] == "sparse" else "weight")
        assert t["weight_bits"] == pytest.approx(8 * t["weight_bytes"] / per, rel=1e-3)
        if variant == "clustered":
            assert 5 < t["kept_pct"] < 15
            assert t["encoding"] == "sparse" or t["weights"] < 2000  # the 1280-weight output may go raw
        else:
            assert t["kept_pct"] > 95 and t["index_bits"] is None


def _zipped_bytes(tfl: bytes) -> int:
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.tflite", tfl)
    return len(zipped.getvalue())


def test_sparse_clustered_files_beat_zip(exports, encoded):
    # Random positions and uniformly used centroids are the worst case for Huffman coding (entropy:
    # ~4.6 bits per gap at 10% kept, 4 bits per value); zip needs about 2 bytes per kept weight.
    blob, acc = encoded[("clustered", "int8_dynamic")]
    fc1 = next(t for t in acc["tensors"] if "fc1" in t["tensor"])
    assert fc1["encoding"] == "sparse" and fc1["weights"] == 256 * 128
    assert fc1["codebook_values"] <= 16 and fc1["weight_bits"] < 4.2 and fc1["index_bits"] < 5
    assert fc1["bytes"] < 1.2 * fc1["weights"] * fc1["kept_pct"] / 100  # bytes per kept weight
    assert len(blob) < 0.72 * _zipped_bytes(exports[("clustered", "int8_dynamic")])
    blob, acc = encoded[("clustered", "float32")]
    assert len(blob) < 0.6 * _zipped_bytes(exports[("clustered", "float32")])
    assert acc["ratio"] > 15  # 32-bit weights, 90% of them zero, become ~9 bits per kept weight


def test_layer_names_from_tensor_names():
    names = ["fc1", "fc2", "output"]
    assert layer_of("sequential/fc1/MatMul", names) == "fc1"
    assert layer_of("model/quant_fc2/MatMul;model/quant_fc2/BiasAdd", names) == "fc2"
    assert layer_of("model/flatten/Reshape", names) is None
    assert layer_of("m/dw_relu/Relu6;m/bn/FusedBatchNormV3;m/fc1/depthwise", names) == "fc1"


# --- damaged files --------------------------------------------------------------------------------


def _one_line_error(blob):
    with pytest.raises(ContainerError) as err:
        dc.decode(blob)
    assert "\n" not in str(err.value) and str(err.value)
    return str(err.value)


def _with_body(blob: bytes, patch) -> bytes:
    """The blob with its body patched and a valid checksum (a crafted, not a corrupted, file)."""
    body = bytearray(blob[14:])
    patch(body)
    return blob[:10] + struct.pack("<I", zlib.crc32(bytes(body))) + bytes(body)


def test_damaged_files_give_one_line(encoded, exports):
    blob, _ = encoded[("clustered", "float32")]
    for cut in (0, 5, 13, 14, 40, len(blob) // 2, len(blob) - 1):
        _one_line_error(blob[:cut])
    for i in range(14):  # every header byte
        flipped = bytearray(blob)
        flipped[i] ^= 0x5A
        _one_line_error(bytes(flipped))
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 1
    assert "checksum" in _one_line_error(bytes(flipped))
    _one_line_error(b"")
    _one_line_error(np.random.default_rng(0).bytes(5000))
    _one_line_error(MAGIC + np.random.default_rng(1).bytes(200))
    assert "not a Deep Compression container" in _one_line_error(exports[("plain", "float32")])


def test_header_claiming_huge_counts_is_refused(encoded):
    blob, _ = encoded[("clustered", "float32")]
    assert "declare a TFLite file of 1,000,000,000,000 bytes" in _one_line_error(_with_body(blob, lambda b: b.__setitem__(slice(0, 8), struct.pack("<Q", 10**12))))
    graph_len = struct.unpack_from("<Q", blob, 14 + 8 + 32 + 1 + 8)[0]
    count_at = 8 + 32 + 17 + graph_len  # in the body
    assert "tensor count" in _one_line_error(
        _with_body(blob, lambda b: b.__setitem__(slice(count_at, count_at + 4), struct.pack("<I", 4_000_000_000))))
    entries_at = count_at + 4 + 18 + 1  # first record: region header, then b, entries
    assert struct.unpack_from("<B", blob, 14 + count_at + 4 + 17)[0] == 2  # it is sparse
    assert "entry count" in _one_line_error(
        _with_body(blob, lambda b: b.__setitem__(slice(entries_at, entries_at + 8), struct.pack("<Q", 10**12))))


def test_encode_refuses_damaged_tflite_with_one_line(exports):
    tfl = exports[("plain", "int8_dynamic")]
    for bad in (b"", b"hello world, no flatbuffer", tfl[:100], tfl[:len(tfl) // 2]):
        with pytest.raises(TFLiteFileError) as err:
            dc.encode(bad)
        assert "\n" not in str(err.value)
    rng = np.random.default_rng(2)
    for _ in range(30):  # random damage: a one-line error or a file that still round-trips, nothing else
        damaged = bytearray(tfl)
        damaged[8 + int(rng.integers(len(tfl) - 8))] ^= int(rng.integers(1, 256))
        try:
            blob, _ = dc.encode(bytes(damaged))
        except TFLiteFileError:
            continue
        assert dc.decode(blob) == bytes(damaged)


# --- command line -----------------------------------------------------------------------------------


def test_unpack_command(tmp_path, encoded, exports, capsys):
    blob, _ = encoded[("clustered", "int8_full")]
    src, out = tmp_path / "model.dc", tmp_path / "model.tflite"
    src.write_bytes(blob)
    assert main(["unpack", str(src), "--out", str(out)]) == 0
    assert out.read_bytes() == exports[("clustered", "int8_full")]
    assert main(["unpack", str(src), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["unpack", str(src), "--out", str(out), "--force"]) == 0

    bad = tmp_path / "bad.dc"
    bad.write_bytes(blob[: len(blob) // 2])
    code = ("import sys; from compression.cli.main import main; rc = main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'unpack imported TensorFlow'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "unpack", str(bad), "--out", str(tmp_path / "x.tflite")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "bad.dc" in proc.stderr
    assert not (tmp_path / "x.tflite").exists()


# --- chart ------------------------------------------------------------------------------------------------


def test_where_the_bits_go_chart(encoded):
    from compression.recipe import exporters

    spec_of = exporters.get("dc").accounting
    _, acc = encoded[("clustered", "float32")]
    table = charts.accounting_table(spec_of, acc)
    rest = spec_of.rest[0]
    assert list(table["layer"]) == ["fc1", "output", rest]
    assert table["bytes"].sum() == acc["dc_bytes"]
    spec = charts.accounting_chart(spec_of, acc, "model.dc").to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert {r["layer"] for r in rows} == {"fc1", "output", rest}
    assert {r["kind"] for r in rows if r["layer"] == "fc1"} == {"index", "weights", "codebook"}
    assert sum(r["bytes"] for r in rows) == acc["dc_bytes"]
