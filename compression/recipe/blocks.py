"""Weight blocks, TensorFlow-free: which layers a block size or a codebook fits, checked the same way
before a run (``python -m compression check``) and by the engine when it runs.

A kernel is seen as one column of weights per output channel: Keras' kernel reshaped to
``(weights per channel, channels)`` (Dense ``[in, out]``; Conv2D ``[h, w, in, out]``, so a column
runs over h, w, then the input channels). A block is ``block_size`` consecutive weights of one
column. This is also the order a TFLite file stores a channel in (Dense ``[out, in]``, Conv2D
``[out, h, w, in]``), so a block is ``block_size`` consecutive weights of the file's tensor, which
is how the Deep Compression container finds product-quantized codewords again.

Quant-Noise (fairseq's ``quant_noise``) draws its noise per block; product quantization
(fairseq's ``pq``) replaces each block by one of ``codebook_size`` codewords.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compression.errors import RecipeError

# Layer types whose kernel's last axis is its output channels (what blocks and per-channel scales need).
BLOCK_TYPES = ("Dense", "Conv1D", "Conv2D", "Conv3D")


@dataclass(frozen=True)
class KernelInfo:
    """A layer with weights as the checks before a run see it: name, Keras class, kernel shape."""

    name: str
    type: str
    shape: tuple[int, ...]

    @property
    def column(self) -> int:
        """Weights per output channel."""
        return math.prod(self.shape[:-1]) if len(self.shape) >= 2 else 0

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def weights_text(n: int) -> str:
    """ "1 weight", "8 weights"."""
    return f"{n} weight" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class BlockPlan:
    """What a block size (and a codebook) does to each chosen layer."""

    layers: dict[str, tuple[int, int | None]]  # layer -> (block size, codebook size or None), in model order
    notes: tuple[str, ...]  # layers left out, and why


def plan_blocks(kernels: list[KernelInfo], chosen: set[str], where: str, block_field: str, block_for,
                explicit_blocks: set[str], codebook_field: str | None = None, codebook_for=None,
                explicit_codebooks: frozenset[str] = frozenset()) -> BlockPlan:
    """Which chosen layers a block size divides (and have at least as many blocks as codewords).

    A layer the setting does not fit is left out with a note; RecipeError (one line) when it fits
    no layer at all, or does not fit a layer the step names in a per-layer map.
    """
    out: dict[str, tuple[int, int | None]] = {}
    notes: list[str] = []
    considered = [k for k in kernels if k.name in chosen]
    for k in considered:
        bs = int(block_for(k.name))
        if k.type not in BLOCK_TYPES:
            notes.append(f"{k.name} left out: a {k.type} kernel has no output-channel axis to cut into blocks")
            continue
        if k.column % bs:
            if k.name in explicit_blocks:
                raise RecipeError(f"{where}.{block_field}.{k.name}",
                                  f"{bs} does not divide the {k.column} weights per output channel of {k.name}")
            notes.append(f"{k.name} left out: its {k.column} weights per output channel are not a multiple of "
                         f"{block_field} {bs}")
            continue
        codebook = None
        if codebook_for is not None:
            codebook = int(codebook_for(k.name))
            blocks = k.size // bs
            if codebook > blocks:
                if k.name in explicit_codebooks:
                    raise RecipeError(f"{where}.{codebook_field}.{k.name}",
                                      f"{codebook} codewords for {k.name}, which has only {blocks} blocks of {bs}")
                notes.append(f"{k.name} left out: it has {blocks} blocks of {bs} weights, fewer than "
                             f"{codebook} codewords")
                continue
        out[k.name] = (bs, codebook)
    if not out and considered:
        columns = ", ".join(f"{k.name} {k.column}" for k in considered if k.type in BLOCK_TYPES)
        if not columns:
            raise RecipeError(f"{where}.layers", f"selects no layer whose kernel can be cut into blocks "
                                                 f"({', '.join(BLOCK_TYPES)})")
        if codebook_for is not None and all(k.column % int(block_for(k.name)) == 0 for k in considered
                                            if k.type in BLOCK_TYPES):
            sizes = ", ".join(f"{k.name} {k.size // int(block_for(k.name))}" for k in considered
                              if k.type in BLOCK_TYPES)
            raise RecipeError(f"{where}.{codebook_field}", f"{codebook_for(considered[0].name)} codewords is more "
                                                           f"than the blocks of every chosen layer (blocks: {sizes})")
        sizes = sorted({int(block_for(k.name)) for k in considered})
        raise RecipeError(f"{where}.{block_field}", f"{', '.join(map(str, sizes))} divides no chosen kernel's "
                                                    f"weights per output channel ({columns})")
    return BlockPlan(out, tuple(notes))


__all__ = ["BLOCK_TYPES", "BlockPlan", "KernelInfo", "plan_blocks", "weights_text"]
