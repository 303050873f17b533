"""Canonical Huffman coding of integer symbol streams, in numpy.

A code is described by its code lengths alone (one per symbol, 0 = symbol absent): the
canonical assignment gives the codes, so a container stores lengths, never a tree.
Codes are written most significant bit first. Lengths are capped at ``MAX_CODE_BITS``
so the decoder's lookup table stays small (2**MAX_CODE_BITS entries at most).
"""

from __future__ import annotations

import numpy as np

from compression.errors import ContainerError

MAX_CODE_BITS = 20
LENGTH_FIELD_BITS = 5  # each stored code length takes 5 bits (0..31 >= MAX_CODE_BITS)
MAX_SYMBOLS = 1 << 18  # alphabets larger than this are not Huffman-coded
_CHUNK_SYMBOLS = 1 << 16
_CHUNK_BITS = 1 << 20


def code_lengths(counts: np.ndarray, max_bits: int = MAX_CODE_BITS) -> np.ndarray:
    """Optimal code lengths for symbol frequencies (0 for absent symbols).

    One present symbol gets a 1-bit code. When the optimal tree is deeper than ``max_bits``
    the counts are halved (rare symbols stay present) until it fits: still a prefix code,
    a little longer than optimal.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-d array of non-negative integers")
    present = np.flatnonzero(counts)
    if present.size > (1 << max_bits):
        raise ValueError(f"{present.size} symbols do not fit in codes of at most {max_bits} bits")
    lengths = np.zeros(counts.size, dtype=np.uint8)
    if present.size == 0:
        return lengths
    if present.size == 1:
        lengths[present[0]] = 1
        return lengths
    weights = counts[present]
    while True:
        depth = _tree_depths(weights)
        if depth.max() <= max_bits:
            break
        weights = (weights + 1) // 2
    lengths[present] = depth
    return lengths


def _tree_depths(weights: np.ndarray) -> np.ndarray:
    """Leaf depths of a Huffman tree (two-queue construction over sorted weights)."""
    m = int(weights.size)
    order = np.argsort(weights, kind="stable")
    leaf_w = weights[order].tolist()
    node_w: list[int] = []  # internal nodes, created in nondecreasing weight order
    parent = [0] * (2 * m - 1)  # nodes 0..m-1 are leaves (sorted), m.. internal
    i = j = 0
    for k in range(m - 1):
        kids = []
        for _ in range(2):
            if i < m and (j >= len(node_w) or leaf_w[i] <= node_w[j]):
                kids.append((i, leaf_w[i]))
                i += 1
            else:
                kids.append((m + j, node_w[j]))
                j += 1
        node_w.append(kids[0][1] + kids[1][1])
        parent[kids[0][0]] = parent[kids[1][0]] = m + k
    depth = [0] * (2 * m - 1)
    for n in range(2 * m - 3, -1, -1):  # parents are created after their children
        depth[n] = depth[parent[n]] + 1
    out = np.empty(m, dtype=np.uint8)
    out[order] = np.minimum(np.array(depth[:m]), 255)
    return out


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical code of every symbol (shorter codes first, ties by symbol number)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(lengths.size, dtype=np.int64)
    present = np.flatnonzero(lengths)
    order = present[np.lexsort((present, lengths[present]))]
    code, prev = 0, 0
    for s in order.tolist():
        n = int(lengths[s])
        code <<= n - prev
        codes[s] = code
        code += 1
        prev = n
    return codes


def kraft_ok(lengths: np.ndarray) -> bool:
    """True when the lengths describe a prefix code (sum of 2**-length <= 1)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    present = lengths[lengths > 0]
    if present.size == 0:
        return True
    if present.max() > MAX_CODE_BITS:
        return False
    return int(np.sum(1 << (MAX_CODE_BITS - present))) <= (1 << MAX_CODE_BITS)


def stream_bits(counts: np.ndarray, lengths: np.ndarray) -> int:
    return int(np.dot(np.asarray(counts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)))


def encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """The bit stream of ``symbols`` (packed, MSB first) and its length in bits."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size == 0:
        return b"", 0
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = canonical_codes(lengths)
    if (lengths[symbols] == 0).any():
        raise ValueError("a symbol in the stream has no code")
    width = int(lengths[symbols].max())
    j = np.arange(width, dtype=np.int64)
    pieces = []
    for start in range(0, symbols.size, _CHUNK_SYMBOLS):
        s = symbols[start:start + _CHUNK_SYMBOLS]
        c, n = codes[s][:, None], lengths[s][:, None]
        shift = n - 1 - j
        bits = (c >> np.maximum(shift, 0)) & 1
        pieces.append(bits[shift >= 0].astype(np.uint8))
    bits = np.concatenate(pieces)
    return np.packbits(bits).tobytes(), int(bits.size)


def decode(data: bytes, nbits: int, lengths: np.ndarray, count: int) -> np.ndarray:
    """``count`` symbols read from a stream of exactly ``nbits`` bits; ContainerError otherwise."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if count == 0:
        if nbits != 0:
            raise ContainerError("damaged container: an empty stream holds bits")
        return np.zeros(0, dtype=np.int64)
    if nbits > 8 * len(data) or nbits < count:
        raise ContainerError("damaged container: a coded stream is shorter than its symbol count")
    if not kraft_ok(lengths) or not lengths.any():
        raise ContainerError("damaged container: invalid Huffman code lengths")
    width = int(lengths.max())
    codes = canonical_codes(lengths)
    present = np.flatnonzero(lengths)
    span = 1 << (width - lengths[present])
    table_sym = np.full(1 << width, -1, dtype=np.int64)
    table_len = np.zeros(1 << width, dtype=np.int64)
    starts = codes[present] << (width - lengths[present])
    idx = np.repeat(starts, span) + (np.arange(int(span.sum())) - np.repeat(np.cumsum(span) - span, span))
    table_sym[idx] = np.repeat(present, span)
    table_len[idx] = np.repeat(lengths[present], span)

    bits = np.concatenate([np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:nbits],
                           np.zeros(width, dtype=np.uint8)])  # one byte per bit; windows per chunk
    out: list[int] = []
    pos = 0
    while len(out) < count:
        if pos >= nbits:
            raise ContainerError("damaged container: a coded stream ends early")
        start, end = pos, min(nbits, pos + _CHUNK_BITS)
        window = np.zeros(end - start, dtype=np.int32)  # width <= MAX_CODE_BITS < 31
        for k in range(width):
            window = (window << 1) | bits[start + k:end + k]
        syms, lens = table_sym[window].tolist(), table_len[window].tolist()
        p, limit, need = 0, end - start, count - len(out)
        append = out.append
        while p < limit and need:
            n = lens[p]
            if n == 0:
                raise ContainerError("damaged container: a coded stream holds an invalid code")
            append(syms[p])
            p += n
            need -= 1
        pos = start + p
    if pos != nbits:
        raise ContainerError("damaged container: a coded stream has the wrong length")
    return np.array(out, dtype=np.int64)


def pack_lengths(lengths: np.ndarray) -> bytes:
    """Code lengths as 5-bit fields (the alphabet size is stored by the caller)."""
    lengths = np.asarray(lengths, dtype=np.uint8)
    bits = np.unpackbits(lengths[:, None], axis=1)[:, 8 - LENGTH_FIELD_BITS:]
    return np.packbits(bits.reshape(-1)).tobytes()


def packed_lengths_bytes(alphabet: int) -> int:
    return (alphabet * LENGTH_FIELD_BITS + 7) // 8


def unpack_lengths(data: bytes, alphabet: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:alphabet * LENGTH_FIELD_BITS]
    bits = bits.reshape(alphabet, LENGTH_FIELD_BITS)
    full = np.zeros((alphabet, 8), dtype=np.uint8)
    full[:, 8 - LENGTH_FIELD_BITS:] = bits
    return np.packbits(full, axis=1).reshape(-1)
