"""The Deep Compression container ``model.dc``: a lossless encoding of a TFLite file.

Stage three of Han, Mao and Dally's Deep Compression (ICLR 2016), applied to the file the
studio exports. Every kernel tensor (a constant tensor of rank >= 2 holding float32, float16
or int8) is cut out of the flatbuffer and stored in whichever of these is smallest:

* sparse: the paper's relative-index format. Walking the flattened tensor, each kept
  (nonzero) weight is an entry (gap, value): ``gap`` zeros are skipped before it, stored in
  ``b`` bits' worth of alphabet; a gap above 2**b - 1 is bridged with filler entries (gap
  2**b - 1, value zero). ``b`` is chosen per tensor. Values are indices into the tensor's
  codebook (the distinct nonzero bit patterns it holds, so the coding is exact), and both
  streams, gaps and value indices, are Huffman-coded.
* dense: every weight's codebook index, Huffman-coded, no index stream.
* raw: the bytes as they are (or deflated/LZMA'd when that is smaller).
* blocks: the tensor cut into blocks of ``b`` consecutive items (``b`` chosen per tensor, 2..64);
  the distinct blocks are a codebook and each block is its index, at ``ceil(log2 K)`` bits or
  Huffman-coded, whichever is smaller. This is how a product-quantized kernel is stored (its
  blocks are consecutive weights of one output channel, recipe/blocks.py), and only tried for a
  tensor of at most 4,096 distinct values.

Everything else in the file (the graph, biases, scales, metadata) is compressed with zlib or
LZMA, whichever is smaller. ``decode`` rebuilds the file byte for byte and checks its
SHA-256; it never runs anything from the blob, checks every count against limits and the
blob's length before allocating (the rebuilt file may be at most 256x the container, or 64 MB;
a zlib/LZMA section at most 64x its stored bytes, or 1 MB; a coded stream at least one bit per symbol),
decodes Huffman streams without a Python step per symbol, and raises ContainerError (one line)
on anything wrong.

Layout (little-endian): magic ``TFLITEDC``, uint16 version, uint32 CRC-32 of the rest;
uint64 tflite bytes, 32-byte SHA-256 of the TFLite file; graph: uint8 codec, uint64 raw
length, uint64 stored length, bytes; uint32 tensor count; per tensor: uint64 file offset,
uint64 length, uint8 item bytes, uint8 encoding, then the encoding's fields (see ``_put_*``).
A Huffman stream is: uint32 alphabet size, its code lengths as 5-bit fields, uint64 bit
count, the bits.
"""

from __future__ import annotations

import hashlib
import lzma
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from compression.dc import huffman
from compression.tflite.kernels import tensor_layers
from compression.tflite.reader import FLOAT16, FLOAT32, INT8, ITEM_BYTES, TensorInfo, read
from compression.errors import ContainerError

MAGIC = b"TFLITEDC"
VERSION = 1
MAX_TFLITE_BYTES = 1 << 31  # FlatBuffers' own limit without external buffers
# What a container may declare, checked before anything is allocated: the rebuilt file at most
# MAX_RATIO times the container's own size (or RATIO_FLOOR_BYTES, whichever is more), and a
# compressed section (zlib, LZMA) at most MAX_SECTION_RATIO times its stored bytes (or
# SECTION_FLOOR_BYTES). The encoder keeps to the same rules, so every file it writes decodes.
MAX_RATIO = 256  # the studio's files compress 40-70x (docs/benchmarks.md)
RATIO_FLOOR_BYTES = 64 << 20  # every model up to 64 MB decodes whatever its ratio
MAX_SECTION_RATIO = 64  # a graph section (flatbuffer tables, biases, scales) compresses a few times
SECTION_FLOOR_BYTES = 1 << 20
MAX_TENSORS = 1 << 16
MAX_GAP_BITS = 12
KERNEL_TYPES = {FLOAT32, FLOAT16, INT8}

CODEC_NONE, CODEC_ZLIB, CODEC_LZMA = 0, 1, 2
CODEC_NAMES = {CODEC_NONE: "none", CODEC_ZLIB: "zlib", CODEC_LZMA: "lzma"}
RAW, DENSE, SPARSE, BLOCKS = 0, 1, 2, 3
ENCODING_NAMES = {RAW: "raw", DENSE: "dense", SPARSE: "sparse", BLOCKS: "blocks"}
MAX_BLOCK_ITEMS = 64  # longest block the blocks encoding tries
MAX_BLOCK_DISTINCT = 4096  # a tensor with more distinct values is not tried in blocks
MAX_BLOCK_CODES = 1 << 16  # most distinct blocks a codebook may hold
_UINT = {1: "u1", 2: "<u2", 4: "<u4"}
_HEAD = struct.Struct("<8sHI")
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6}]  # raw stream: no xz header to pay for
_REGION = struct.Struct("<QQBB")


# --- standard-library codecs -------------------------------------------------------------


def section_limit(stored: int) -> int:
    """The most bytes a compressed section of ``stored`` bytes may declare."""
    return max(SECTION_FLOOR_BYTES, MAX_SECTION_RATIO * stored)


def file_limit(container_bytes: int) -> int:
    """The largest TFLite file a container of this many bytes may declare."""
    return min(MAX_TFLITE_BYTES, max(RATIO_FLOOR_BYTES, MAX_RATIO * container_bytes))


def _smallest_codec(data: bytes, allow_none: bool = True) -> tuple[int, bytes]:
    options = [(CODEC_ZLIB, zlib.compress(data, 9)),
               (CODEC_LZMA, lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS))]
    # the decoder refuses a section that expands beyond section_limit: never write one
    options = [o for o in options if len(data) <= section_limit(len(o[1]))]
    if allow_none or not options:
        options.append((CODEC_NONE, data))
    return min(options, key=lambda o: (len(o[1]), o[0]))


def _decompress(codec: int, data: bytes, expected: int) -> bytes:
    if codec != CODEC_NONE and expected > section_limit(len(data)):
        raise ContainerError(f"refused: a compressed section of {len(data):,} bytes declares {expected:,}, more than "
                             f"{MAX_SECTION_RATIO}x; a decompression bomb?")
    try:
        if codec == CODEC_NONE:
            out = data
        elif codec == CODEC_ZLIB:
            d = zlib.decompressobj()
            out = d.decompress(data, expected + 1)
        elif codec == CODEC_LZMA:
            d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
            out = d.decompress(data, max_length=expected + 1)
        else:
            raise ContainerError(f"damaged container: unknown codec {codec}")
    except (zlib.error, lzma.LZMAError, EOFError):
        raise ContainerError("damaged container: a compressed section does not decompress") from None
    if len(out) != expected:
        raise ContainerError("damaged container: a compressed section has the wrong size")
    return out


# --- Huffman stream blocks -----------------------------------------------------------------


def _trimmed(lengths: np.ndarray) -> np.ndarray:
    present = np.flatnonzero(lengths)
    return lengths[: present[-1] + 1] if present.size else lengths[:0]


def _stream_bytes(counts: np.ndarray, lengths: np.ndarray) -> tuple[int, int]:
    """(stored bytes of the block without its bits, bits) for a stream with these counts."""
    alphabet = _trimmed(lengths).size
    return 4 + huffman.packed_lengths_bytes(alphabet) + 8, huffman.stream_bits(counts, lengths)


def _put_stream(out: bytearray, symbols: np.ndarray, lengths: np.ndarray) -> int:
    """Append a Huffman stream block; returns the bytes of its bit stream."""
    lengths = _trimmed(lengths)
    data, nbits = huffman.encode(symbols, lengths)
    out += struct.pack("<I", lengths.size) + huffman.pack_lengths(lengths)
    out += struct.pack("<Q", nbits) + data
    return len(data)


# --- encoding ------------------------------------------------------------------------------


@dataclass
class _Plan:
    encoding: int
    size: int  # bytes of the record, estimated exactly
    b: int = 0
    huffman: bool = False  # blocks: codes Huffman-coded (else fixed width)


def kernel_tensors(tflite: bytes) -> list[tuple[TensorInfo, int, int]]:
    """(tensor, file offset, length) of every kernel tensor, sorted by offset, no overlaps."""
    model = read(tflite)
    found: dict[int, tuple[TensorInfo, int, int]] = {}
    for t in model.tensors:
        if t.type not in KERNEL_TYPES or len(t.shape) < 2 or any(d <= 0 for d in t.shape):
            continue
        if not 0 < t.buffer < len(model.buffers) or t.buffer in found:
            continue
        buf = model.buffers[t.buffer]
        if buf.length == 0 or buf.length != math.prod(t.shape) * ITEM_BYTES[t.type]:
            continue
        found[t.buffer] = (t, buf.offset, buf.length)
    regions, end = [], 0
    for t, off, n in sorted(found.values(), key=lambda r: r[1]):
        if off >= end:
            regions.append((t, off, n))
            end = off + n
    return regions


def _sparse_parts(b: int, inverse_nz: np.ndarray, gaps: np.ndarray):
    """Gap and weight symbol streams of the relative-index format for gap width ``b``."""
    step = 1 << b
    fillers = gaps >> b
    rest = gaps & (step - 1)
    real_at = np.cumsum(fillers + 1) - 1
    entries = int(real_at[-1]) + 1 if real_at.size else 0
    gap_syms = np.full(entries, step - 1, dtype=np.int64)
    weight_syms = np.zeros(entries, dtype=np.int64)
    gap_syms[real_at] = rest
    weight_syms[real_at] = inverse_nz + 1
    return gap_syms, weight_syms


def _encode_tensor(raw: bytes, item: int) -> tuple[bytes, dict]:
    values = np.frombuffer(raw, dtype=_UINT[item])
    n = values.size
    nz = values != 0
    nnz = int(nz.sum())
    plans: list[_Plan] = []

    codec, packed = _smallest_codec(raw)
    plans.append(_Plan(RAW, 1 + 8 + len(packed)))

    codebook, inverse = np.unique(values, return_inverse=True)
    if codebook.size <= huffman.MAX_SYMBOLS:
        counts = np.bincount(inverse.reshape(-1), minlength=codebook.size)
        lengths = huffman.code_lengths(counts)
        head, bits = _stream_bytes(counts, lengths)
        plans.append(_Plan(DENSE, 4 + codebook.size * item + head + (bits + 7) // 8))

    nz_book, nz_inverse = np.unique(values[nz], return_inverse=True)
    nz_inverse = nz_inverse.reshape(-1)
    positions = np.flatnonzero(nz)
    gaps = np.diff(positions, prepend=-1) - 1
    if nz_book.size + 1 <= huffman.MAX_SYMBOLS:
        wcounts_real = np.bincount(nz_inverse + 1, minlength=nz_book.size + 1)
        for b in range(1, MAX_GAP_BITS + 1):
            step = 1 << b
            fillers = int((gaps >> b).sum())
            gcounts = np.bincount(gaps & (step - 1), minlength=step)
            gcounts[step - 1] += fillers
            wcounts = wcounts_real.copy()
            wcounts[0] += fillers
            gh, gbits = _stream_bytes(gcounts, huffman.code_lengths(gcounts))
            wh, wbits = _stream_bytes(wcounts, huffman.code_lengths(wcounts))
            size = 1 + 8 + 4 + nz_book.size * item + gh + (gbits + 7) // 8 + wh + (wbits + 7) // 8
            plans.append(_Plan(SPARSE, size, b))

    if 1 < codebook.size <= MAX_BLOCK_DISTINCT:
        plans += _block_plans(values, item)

    plan = min(plans, key=lambda p: (p.size, p.encoding))
    out = bytearray()
    stats = {"index_bytes": 0, "index_bits_total": 0, "weight_bytes": 0, "weight_bits_total": 0,
             "codebook_values": 0, "gap_bits": 0, "codec": ""}
    if plan.encoding == RAW:
        out += struct.pack("<BQ", codec, len(packed)) + packed
        stats.update(weight_bytes=len(packed), weight_bits_total=8 * len(packed), codec=CODEC_NAMES[codec])
    elif plan.encoding == DENSE:
        out += struct.pack("<I", codebook.size) + codebook.astype(_UINT[item]).tobytes()
        lengths = huffman.code_lengths(np.bincount(inverse.reshape(-1), minlength=codebook.size))
        nbytes = _put_stream(out, inverse.reshape(-1), lengths)
        stats.update(weight_bytes=nbytes, weight_bits_total=8 * nbytes, codebook_values=int(codebook.size))
    elif plan.encoding == BLOCKS:
        book, codes = _blocks(values, plan.b)
        out += struct.pack("<BIB", plan.b, len(book), int(plan.huffman)) + book.tobytes()
        if plan.huffman:
            nbytes = _put_stream(out, codes, huffman.code_lengths(np.bincount(codes, minlength=len(book))))
        else:
            packed = _pack_fixed(codes, _fixed_bits(len(book)))
            out += packed
            nbytes = len(packed)
        stats.update(weight_bytes=nbytes, weight_bits_total=8 * nbytes, codebook_values=int(len(book)), block=plan.b)
    else:
        gap_syms, weight_syms = _sparse_parts(plan.b, nz_inverse, gaps)
        out += struct.pack("<BQI", plan.b, gap_syms.size, nz_book.size) + nz_book.astype(_UINT[item]).tobytes()
        wl = huffman.code_lengths(np.bincount(weight_syms, minlength=nz_book.size + 1))
        gl = huffman.code_lengths(np.bincount(gap_syms, minlength=1 << plan.b))
        wbytes = _put_stream(out, weight_syms, wl)
        gbytes = _put_stream(out, gap_syms, gl)
        stats.update(weight_bytes=wbytes, weight_bits_total=8 * wbytes, index_bytes=gbytes,
                     index_bits_total=8 * gbytes, codebook_values=int(nz_book.size), gap_bits=plan.b)
    if len(out) != plan.size:  # the estimate drives the choice; keep it honest
        raise AssertionError(f"size estimate {plan.size} != {len(out)}")
    stats.update(encoding=plan.encoding, nnz=nnz, n=n)
    return bytes(out), stats


def _fixed_bits(k: int) -> int:
    return max(1, int(k - 1).bit_length())


def _blocks(values: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct blocks, a (K, b) array sorted by their bytes; the index of every block)."""
    rows = np.ascontiguousarray(values.reshape(-1, b))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * b))).reshape(-1)
    _, first, codes = np.unique(keys, return_index=True, return_inverse=True)
    return rows[first], codes.reshape(-1).astype(np.int64)


def _pack_fixed(codes: np.ndarray, bits: int) -> bytes:
    """Codes at ``bits`` bits each, most significant bit first."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return np.packbits(((codes[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)).tobytes()


def _unpack_fixed(data: bytes, bits: int, count: int) -> np.ndarray:
    """``count`` codes of ``bits`` bits each, most significant bit first; in pieces of 2**16 codes (a piece
    of 8 codes ends on a byte), so the unpacked bits never cost more than a few MB."""
    raw = np.frombuffer(data, dtype=np.uint8)
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    out = np.empty(count, dtype=np.int64)
    step = 1 << 16
    for start in range(0, count, step):
        n = min(step, count - start)
        piece = raw[start * bits // 8:(start * bits + n * bits + 7) // 8]
        out[start:start + n] = np.unpackbits(piece)[: n * bits].reshape(n, bits).astype(np.int64) @ weights
    return out


def _block_plans(values: np.ndarray, item: int) -> list[_Plan]:
    """The blocks encoding for every block length that divides the tensor and whose blocks repeat (a length
    out of step with the codewords repeats little, a length in step with them again a lot: none is skipped)."""
    plans = []
    n = values.size
    for b in range(2, MAX_BLOCK_ITEMS + 1):
        if n % b:
            continue
        book, codes = _blocks(values, b)
        k = len(book)
        if k > MAX_BLOCK_CODES or k * 2 > n // b:  # blocks hardly repeat: no saving at this length
            continue
        head = 1 + 4 + 1 + k * b * item
        fixed = (codes.size * _fixed_bits(k) + 7) // 8
        counts = np.bincount(codes, minlength=k)
        sh, sbits = _stream_bytes(counts, huffman.code_lengths(counts))
        coded = sh + (sbits + 7) // 8
        plans.append(_Plan(BLOCKS, head + min(fixed, coded), b, coded < fixed))
    return plans


def encode(tflite: bytes, layer_names=()) -> tuple[bytes, dict]:
    """``(model.dc bytes, accounting)`` for a TFLite file; TFLiteFileError if it is not one.

    Each tensor row of the accounting carries ``layer``: the Keras layer (of ``layer_names``) whose
    kernel it is, as the one matcher (compression.tflite.kernels) finds it, else the tensor's name;
    rows come in the order of ``layer_names`` (the model's order, as the paper's tables), then the rest.
    """
    tflite = bytes(tflite)
    if len(tflite) > MAX_TFLITE_BYTES:
        raise ContainerError(f"TFLite file of {len(tflite):,} bytes is larger than {MAX_TFLITE_BYTES:,}")
    regions = kernel_tensors(tflite)
    names = list(layer_names)
    owners = tensor_layers(tflite, names) if names else {}
    graph, cursor = bytearray(), 0
    records, rows = [], []
    for t, off, length in regions:
        graph += tflite[cursor:off]
        cursor = off + length
        item = ITEM_BYTES[t.type]
        body, st = _encode_tensor(tflite[off:off + length], item)
        record = _REGION.pack(off, length, item, st["encoding"]) + body
        records.append(record)
        # bits per what each encoding stores: per kept weight for the sparse format (the paper's
        # figure), per weight for a dense or raw tensor (every weight is stored)
        sparse = st["encoding"] == SPARSE
        per = max(st["nnz"] if sparse else st["n"], 1)
        rec_bytes = len(record)
        rows.append({
            "tensor": t.name,
            "layer": owners.get((t.subgraph, t.index)) or t.name,
            "shape": list(t.shape),
            "type": t.type_name,
            "weights": st["n"],
            "kept_pct": 100.0 * st["nnz"] / st["n"],
            "bits_per": "kept weight" if sparse else "weight",
            "weight_bits": st["weight_bits_total"] / per,
            "index_bits": st["index_bits_total"] / per if sparse else None,  # only the sparse format has indices
            "gap_bits": st["gap_bits"],
            "block": st.get("block"),  # the blocks encoding: items per block
            "codebook_values": st["codebook_values"],
            "index_bytes": st["index_bytes"],
            "weight_bytes": st["weight_bytes"],
            # codebook values, Huffman code-length tables and the record's own header
            "codebook_bytes": rec_bytes - st["index_bytes"] - st["weight_bytes"],
            "bytes": rec_bytes,
            "raw_bytes": length,
            "encoding": ENCODING_NAMES[st["encoding"]],
            "raw_codec": st["codec"],
            "ratio": length / rec_bytes,
        })
    graph += tflite[cursor:]
    order = {name: i for i, name in enumerate(names)}
    rows.sort(key=lambda row: order.get(row["layer"], len(order)))  # stable: file order among the rest
    codec, graph_packed = _smallest_codec(bytes(graph))
    body = bytearray()
    body += struct.pack("<Q", len(tflite)) + hashlib.sha256(tflite).digest()
    body += struct.pack("<BQQ", codec, len(graph), len(graph_packed)) + graph_packed
    body += struct.pack("<I", len(records))
    for r in records:
        body += r
    blob = _HEAD.pack(MAGIC, VERSION, zlib.crc32(body)) + bytes(body)
    if len(tflite) > file_limit(len(blob)):  # the decoder would refuse it as a bomb
        raise ContainerError(f"the TFLite file ({len(tflite):,} bytes) compresses more than {MAX_RATIO}x into "
                             f"{len(blob):,} bytes, which model.dc does not store (an all-zero model?)")
    tensor_bytes = sum(r["bytes"] for r in rows)
    accounting = {
        "dc_bytes": len(blob),
        "tflite_bytes": len(tflite),
        "ratio": len(tflite) / len(blob),
        "graph_bytes": len(blob) - tensor_bytes,  # graph, biases, scales, metadata, container header
        "graph_raw_bytes": len(graph),
        "graph_codec": CODEC_NAMES[codec],
        "kernel_raw_bytes": sum(r["raw_bytes"] for r in rows),
        "kernel_bytes": tensor_bytes,
        "tensors": rows,
    }
    return blob, accounting


# --- decoding ------------------------------------------------------------------------------


class _Blob:
    """Bounds-checked reading: every take() that runs past the end is a ContainerError."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.left:
            raise ContainerError("damaged container: truncated (a section runs past the end of the file)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        s = struct.Struct("<" + fmt)
        values = s.unpack(self.take(s.size))
        return values if len(values) > 1 else values[0]


def _limit(value: int, most: int, what: str) -> int:
    if value > most:
        raise ContainerError(f"damaged container: {what} is {value:,}, more than the {most:,} possible")
    return value


def _get_stream(blob: _Blob, max_alphabet: int, count: int) -> np.ndarray:
    alphabet = _limit(blob.unpack("I"), max_alphabet, "a Huffman alphabet size")
    lengths = huffman.unpack_lengths(blob.take(huffman.packed_lengths_bytes(alphabet)), alphabet)
    nbits = _limit(blob.unpack("Q"), 8 * blob.left, "a coded stream's bit count")
    data = blob.take((nbits + 7) // 8)
    return huffman.decode(data, nbits, lengths, count)  # count <= nbits: checked before allocating


def _codebook(blob: _Blob, size: int, item: int) -> np.ndarray:
    return np.frombuffer(blob.take(size * item), dtype=_UINT[item])


_SPARSE_CHUNK = 1 << 20  # entries placed at once


def _decode_tensor(blob: _Blob, out: bytearray, off: int, length: int, item: int, encoding: int) -> None:
    """Decode one tensor record into ``out[off:off + length]`` (zeros already)."""
    n = length // item
    if encoding == RAW:
        codec, size = blob.unpack("BQ")
        out[off:off + length] = _decompress(codec, blob.take(_limit(size, blob.left, "a raw tensor's size")), length)
        return
    target = np.frombuffer(out, dtype=_UINT[item], count=n, offset=off)  # a view: written in place
    if encoding == DENSE:
        k = _limit(blob.unpack("I"), min(n, huffman.MAX_SYMBOLS), "a codebook size")
        book = _codebook(blob, k, item)
        symbols = _get_stream(blob, k, n)
        if k == 0 or symbols.max() >= k:
            raise ContainerError("damaged container: a code names a value outside its codebook")
        for start in range(0, n, _SPARSE_CHUNK):  # in pieces: take() widens its indices to int64
            np.take(book, symbols[start:start + _SPARSE_CHUNK], out=target[start:start + _SPARSE_CHUNK])
        return
    if encoding == SPARSE:
        b, entries, k = blob.unpack("BQI")
        if not 1 <= b <= 16:
            raise ContainerError(f"damaged container: index width {b} bits is outside 1..16")
        _limit(entries, n, "a sparse tensor's entry count")
        _limit(k, min(n, huffman.MAX_SYMBOLS - 1), "a codebook size")
        book = _codebook(blob, k, item)
        weights = _get_stream(blob, k + 1, entries)
        gaps = _get_stream(blob, 1 << b, entries)
        at = -1
        for start in range(0, int(entries), _SPARSE_CHUNK):
            g = gaps[start:start + _SPARSE_CHUNK].astype(np.int64)
            w = weights[start:start + _SPARSE_CHUNK]
            where = at + np.cumsum(g + 1)
            at = int(where[-1])
            if at >= n:
                raise ContainerError("damaged container: a sparse index points past its tensor")
            real = w > 0
            if real.any() and int(w.max()) > k:
                raise ContainerError("damaged container: a code names a value outside its codebook")
            target[where[real]] = book[w[real].astype(np.int64) - 1]
        return
    if encoding == BLOCKS:
        _decode_blocks(blob, target, n, item)
        return
    raise ContainerError(f"damaged container: unknown tensor encoding {encoding}")


def _decode_blocks(blob: _Blob, target: np.ndarray, n: int, item: int) -> None:
    b, k, coded = blob.unpack("BIB")
    if not 2 <= b <= MAX_BLOCK_ITEMS or n % b or coded > 1:
        raise ContainerError("damaged container: a blocks record has an invalid block length or code mode")
    count = n // b
    _limit(k, min(count, MAX_BLOCK_CODES), "a block codebook size")
    book = np.frombuffer(blob.take(k * b * item), dtype=_UINT[item]).reshape(k, b)
    if coded:
        codes = _get_stream(blob, k, count)
    else:
        codes = _unpack_fixed(blob.take((count * _fixed_bits(k) + 7) // 8), _fixed_bits(k), count)
    if count and (k == 0 or int(codes.max()) >= k):
        raise ContainerError("damaged container: a block index points past its codebook")
    rows = target.reshape(count, b)
    for start in range(0, count, _SPARSE_CHUNK):  # in pieces: take() widens its indices to int64
        np.take(book, codes[start:start + _SPARSE_CHUNK], axis=0, out=rows[start:start + _SPARSE_CHUNK])


def decode(blob: bytes) -> bytearray:
    """The TFLite file a ``model.dc`` blob holds, byte-identical; ContainerError if it is damaged.

    Every size the blob declares is checked against the blob's own length and the stated caps
    (``file_limit``, ``section_limit``) before anything is allocated; the file is rebuilt in one
    buffer of its declared size.
    """
    blob = bytes(blob)
    if len(blob) < _HEAD.size or blob[:len(MAGIC)] != MAGIC:
        raise ContainerError("not a Deep Compression container (model.dc): wrong or missing header")
    _, version, crc = _HEAD.unpack_from(blob, 0)
    if version != VERSION:
        raise ContainerError(f"container version {version} is not supported (this reader knows {VERSION})")
    if zlib.crc32(blob[_HEAD.size:]) != crc:
        raise ContainerError("damaged container: checksum mismatch (truncated or corrupted file)")
    r = _Blob(blob, _HEAD.size)
    total = r.unpack("Q")
    if total > file_limit(len(blob)):
        raise ContainerError(f"refused: {len(blob):,} bytes declare a TFLite file of {total:,} bytes; at most "
                             f"{MAX_RATIO}x the container (or {RATIO_FLOOR_BYTES >> 20} MB), and never more than "
                             f"{MAX_TFLITE_BYTES >> 20:,} MB, is accepted")
    digest = r.take(32)
    codec, graph_len, stored = r.unpack("BQQ")
    _limit(graph_len, total, "the graph size")
    graph = _decompress(codec, r.take(_limit(stored, r.left, "the stored graph size")), graph_len)
    count = _limit(r.unpack("I"), min(MAX_TENSORS, r.left // _REGION.size), "the tensor count")
    out = bytearray(total)
    cursor = graph_at = 0
    for _ in range(count):
        off, length, item, encoding = r.unpack("QQBB")
        if item not in _UINT or length % item or length == 0:
            raise ContainerError("damaged container: a tensor record has an invalid item size or length")
        if off < cursor or off + length > total:
            raise ContainerError("damaged container: tensor regions overlap or lie outside the file")
        gap = off - cursor
        if graph_at + gap > len(graph):
            raise ContainerError("damaged container: the graph section is shorter than the file it describes")
        out[cursor:off] = graph[graph_at:graph_at + gap]
        graph_at += gap
        _decode_tensor(r, out, off, length, item, encoding)
        cursor = off + length
    if r.left:
        raise ContainerError("damaged container: unexpected bytes after the last tensor")
    if len(graph) - graph_at != total - cursor:
        raise ContainerError("damaged container: the rebuilt TFLite file does not match its checksum")
    out[cursor:] = graph[graph_at:]
    del graph
    if hashlib.sha256(out).digest() != digest:
        raise ContainerError("damaged container: the rebuilt TFLite file does not match its checksum")
    return out  # no copy: the caller gets the one buffer
