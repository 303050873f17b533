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
_CHUNK_BITS = 1 << 18  # bit positions decoded at once


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


def symbol_dtype(alphabet: int) -> np.dtype:
    """The narrowest unsigned type for symbols below ``alphabet``."""
    return np.dtype(np.uint8 if alphabet <= 1 << 8 else np.uint16 if alphabet <= 1 << 16 else np.uint32)


def _chain(step: np.ndarray) -> np.ndarray:
    """The positions visited from 0 by p -> p + step[p] inside 0..len(step)-1 (a step of 0 stops
    there), in order: a breadth-first walk of that chain as a graph, done in C by scipy."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order

    n = step.size
    nxt = np.arange(n, dtype=np.int32) + step
    np.minimum(nxt, n, out=nxt)  # whatever leaves the range leads to one end node
    indptr = np.arange(n + 2, dtype=np.int32)
    indptr[-1] = n  # the end node has no way out
    graph = csr_matrix((np.ones(n, dtype=np.int8), nxt, indptr), shape=(n + 1, n + 1))
    order = breadth_first_order(graph, 0, directed=True, return_predecessors=False)
    return order[order < n]


class _Tables:
    """Lookup tables of one code: by the next ``width`` bits (one symbol), and by the next
    ``MULTI_BITS`` bits (every whole code they hold: up to MULTI_BITS symbols at once)."""

    def __init__(self, lengths: np.ndarray):
        width = int(lengths.max())
        codes = canonical_codes(lengths)
        present = np.flatnonzero(lengths)
        self.width, self.dtype = width, symbol_dtype(lengths.size)
        span = 1 << (width - lengths[present])
        self.sym = np.zeros(1 << width, dtype=self.dtype)
        self.len = np.zeros(1 << width, dtype=np.int32)  # 0: no code starts with these bits
        starts = codes[present] << (width - lengths[present])
        idx = np.repeat(starts, span) + (np.arange(int(span.sum())) - np.repeat(np.cumsum(span) - span, span))
        self.sym[idx] = np.repeat(present, span)
        self.len[idx] = np.repeat(lengths[present], span)
        m = MULTI_BITS
        v = np.arange(1 << m, dtype=np.int64)
        self.multi_sym = np.zeros((1 << m, m), dtype=self.dtype)
        self.multi_end = np.zeros((1 << m, m), dtype=np.int32)  # bit offset after each symbol
        self.multi_k = np.zeros(1 << m, dtype=np.int32)
        used = np.zeros(1 << m, dtype=np.int64)
        active = np.ones(1 << m, dtype=bool)
        for j in range(m):
            rest = (v << used) & ((1 << m) - 1)  # the bits not yet read, zeros shifted in
            w = (rest << width) >> m  # their first ``width`` bits
            n = self.len[w].astype(np.int64)
            ok = active & (n > 0) & (used + n <= m)
            self.multi_sym[ok, j] = self.sym[w[ok]]
            used = np.where(ok, used + n, used)
            self.multi_end[ok, j] = used[ok]
            self.multi_k += ok
            active = ok
            if not active.any():
                break
        self.multi_bits = used.astype(np.int32)


MULTI_BITS = 16


def _windows(padded: np.ndarray, pos: int, n: int, bits: int) -> np.ndarray:
    """The ``bits`` (<= 24) bits starting at each of the positions pos .. pos+n-1, as integers."""
    p = np.arange(pos, pos + n, dtype=np.int64)
    b = p >> 3
    word = ((padded[b].astype(np.uint32) << 24) | (padded[b + 1].astype(np.uint32) << 16)
            | (padded[b + 2].astype(np.uint32) << 8) | padded[b + 3].astype(np.uint32))
    return ((word << (p & 7).astype(np.uint32)) >> np.uint32(32 - bits)).astype(np.int32)


def decode(data: bytes, nbits: int, lengths: np.ndarray, count: int) -> np.ndarray:
    """``count`` symbols read from a stream of exactly ``nbits`` bits; ContainerError otherwise.

    Vectorised, no Python step per symbol: the stream is read in chunks of ``_CHUNK_BITS`` bit
    positions; at each position a table gives every whole code of the next 16 bits, and the chain
    of positions actually read (one per 16 bits at most) is walked in C. Memory: the symbols
    (narrowest dtype) plus a few arrays of one chunk, whatever the stream holds.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if count == 0:
        if nbits != 0:
            raise ContainerError("damaged container: an empty stream holds bits")
        return np.zeros(0, dtype=np.uint8)
    if nbits > 8 * len(data) or nbits < count:
        raise ContainerError("damaged container: a coded stream is shorter than its symbol count")
    if not kraft_ok(lengths) or not lengths.any():
        raise ContainerError("damaged container: invalid Huffman code lengths")
    t = _Tables(lengths)
    used = (nbits + 7) // 8
    padded = np.zeros(used + 4, dtype=np.uint8)  # 4 spare bytes: every window reads 4 bytes
    padded[:used] = np.frombuffer(data, dtype=np.uint8, count=used)
    if nbits % 8:
        padded[used - 1] &= (0xFF << (8 - nbits % 8)) & 0xFF  # bits past the stream read as zeros
    out = np.empty(count, dtype=t.dtype)
    slots = np.arange(MULTI_BITS, dtype=np.int32)
    got = pos = 0
    while got < count:
        if pos >= nbits:
            raise ContainerError("damaged container: a coded stream ends early")
        n = min(_CHUNK_BITS, nbits - pos)
        w16 = _windows(padded, pos, n, MULTI_BITS)
        k = t.multi_k[w16]
        step = t.multi_bits[w16]
        long = None
        if t.width > MULTI_BITS and not k.all():  # a code longer than 16 bits: one symbol, looked up alone
            wide = _windows(padded, pos, n, t.width)
            long = k == 0
            step = np.where(long, t.len[wide], step)
        at = _chain(step)
        if not step[at].all():
            raise ContainerError("damaged container: a coded stream holds an invalid code")
        kk = k[at]
        cols = max(1, int(kk.max()))  # only as many columns as the fullest window holds
        rows = w16[at]
        syms, ends = t.multi_sym[:, :cols][rows], t.multi_end[:, :cols][rows]
        if long is not None:
            single = long[at]
            syms[single, 0] = t.sym[wide[at[single]]]
            ends[single, 0] = step[at[single]]
            kk = np.where(single, 1, kk)
        mask = slots[:cols] < kk[:, None]
        syms = syms[mask]
        ends = (ends + at[:, None])[mask].astype(np.int64) + pos  # where each symbol's code ends
        take = min(count - got, int(np.searchsorted(ends, nbits, side="right")))
        if take == 0:
            raise ContainerError("damaged container: a coded stream ends in the middle of a code")
        out[got:got + take] = syms[:take]
        got += take
        pos = int(ends[take - 1])
    if pos != nbits:
        raise ContainerError("damaged container: a coded stream has the wrong length")
    return out


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
