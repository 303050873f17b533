"""Iterative product quantization (iPQ), declared: its parameters, its order rules, its size in words.

Stock et al., "And the Bit Goes Down" (ICLR 2020) and Fan, Stock et al., "Training with Quantization
Noise for Extreme Model Compression" (ICLR 2021); reference implementation fairseq's
``fairseq/modules/quantization/pq/``. Each chosen kernel is cut into blocks of ``block_size``
consecutive weights of one output channel (recipe/blocks.py); k-means learns ``codebook_size``
codewords per layer and every block becomes its nearest codeword. Layers are quantized one at a
time, in model order; after each, the codebooks so far and the layers not yet quantized fine-tune
(a codeword's gradient is the mean over its blocks). With ``quant_noise`` the layers not yet
quantized train with fairseq's proxy noise: a random share of their blocks is dropped in each pass
(the rest scaled by 1 / (1 - p)). The file holds the reconstructed kernels; a layer costs
``log2(codebook_size)`` bits per block plus its codebook.

The executor is compression/engine/methods/pq.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compression.errors import RecipeError
from compression.recipe.blocks import plan_blocks
from compression.recipe.choices import ExportMode
from compression.recipe.method import Hint, Method, StepConfig
from compression.recipe.params import LayerSelection, PerLayer, declared_default, param, per_layer_value


@dataclass(frozen=True)
class PQStep(StepConfig):
    method = "pq"

    block_size: int | PerLayer = param(4, "weights per block (sub-vector): consecutive weights of one output "
                                       "channel; it must divide a layer's weights per channel (a layer it does "
                                       "not divide is left out); a number, or {layer name: number}",
                                       kind="per_layer_int", lo=1, hi=64, unit="weights", label="Block size")
    codebook_size: int | PerLayer = param(256, "codewords per layer (k-means centroids); a block costs "
                                          "log2(codebook_size) bits; a layer with fewer blocks is left out; a "
                                          "number, or {layer name: number}", kind="per_layer_int", lo=2, hi=256,
                                          unit="codewords", label="Codebook size")
    kmeans_iterations: int = param(20, "k-means iterations per layer", lo=1, hi=500, unit="iterations",
                                   advanced=True)
    layers: LayerSelection = param(LayerSelection(), "which layers with weights to quantize", kind="layers")
    quant_noise: float = param(0.0, "Quant-Noise (fairseq's proxy for iPQ): the share of blocks of the layers not "
                               "yet quantized dropped in each training pass; 0 = off", lo=0, hi=1, hi_open=True,
                               unit="fraction", label="Quant-Noise share")
    pretrain_epochs: int = param(1, "fine-tuning epochs before the first layer is quantized: with Quant-Noise on "
                                 "every chosen layer where quant_noise > 0, plain otherwise (the same budget "
                                 "either way); 0 skips it", lo=0, hi=1000, unit="epochs", label="Epochs before")
    epochs: int = param(1, "fine-tuning epochs after each layer is quantized (its codebook, the codebooks "
                        "before it and the layers not yet quantized)", lo=1, hi=1000, unit="epochs")
    learning_rate: float = param(1e-4, "Adam's learning rate while fine-tuning", lo=0, hi=1, lo_open=True)

    def block_for(self, layer: str) -> int:
        return per_layer_value(self.block_size, layer, declared_default(PQStep, "block_size"))

    def codebook_for(self, layer: str) -> int:
        return per_layer_value(self.codebook_size, layer, declared_default(PQStep, "codebook_size"))

    @property
    def target_text(self) -> str:
        def text(value) -> str:
            if isinstance(value, PerLayer):
                return "per layer (" + ", ".join(f"{k} {v}" for k, v in value.items) + ")"
            return str(value)

        return f"codebooks of {text(self.codebook_size)} codewords over blocks of {text(self.block_size)}"


def code_bits(codebook_size: int) -> int:
    """Bits of one block's index at a fixed width."""
    return max(1, math.ceil(math.log2(codebook_size)))


class PQ(Method):
    name = "pq"
    rank = 40
    title = "Product quantization (iPQ)"
    help = ("Iterative product quantization (Stock et al. 2020) cuts each kernel into small blocks of weights and "
            "replaces every block by one of a few hundred codewords learnt by k-means, one layer at a time, "
            "fine-tuning the codebooks after each. A block of 4 weights with 256 codewords costs 8 bits: 2 bits a "
            "weight, plus the codebook. With Quant-Noise (Fan, Stock et al. 2021) the layers not yet quantized "
            "learn to do without random blocks first. The file stores the reconstructed kernels; model.dc stores "
            "the codes and codebooks.")
    step_type = PQStep
    establishes = ("codebooks",)
    undoes = {
        "sparsity": "product quantization replaces each block by a codeword, so pruned zeros come back",
        "clusters": "product quantization replaces each block by a codeword, whose weights are no centroids",
        "qat_ranges": "product quantization after quantization-aware training changes the weights QAT trained "
                      "and drops its learned ranges",
    }
    variants = {"pq": "Iterative product quantization", "pq_noise": "Iterative product quantization with Quant-Noise"}
    variant_labels = {"pq_noise": "with Quant-Noise"}

    def variant(self, step: PQStep, intact: frozenset[str]) -> str:
        return "pq_noise" if step.quant_noise > 0 else "pq"

    def describe(self, step: PQStep, variant: str, kept: list[str]) -> str:
        text = (f"Iterative product quantization: {step.target_text}, one layer at a time in model order, "
                f"{step.epochs} fine-tuning epoch(s) after each")
        if variant == "pq_noise":
            text += (f"; the layers not yet quantized train with Quant-Noise ({step.quant_noise:.0%} of their blocks "
                     "dropped in each pass)")
        return text

    def check_recipe(self, step: PQStep, recipe, where: str) -> None:
        if recipe.export not in (ExportMode.FLOAT32, ExportMode.FLOAT16):
            raise RecipeError("export", f"pq stores its codewords in float32 or float16 files: "
                                        f"{recipe.export.value}'s per-channel scales would give each channel its own "
                                        "copy of a codeword; choose float32 or float16")
        others = [s.method for s in recipe.steps if s is not step]
        if others and not recipe.allow_unsafe_order:
            raise RecipeError(f"{where}.method", f"pq runs alone: with {others[0]} in the same recipe one undoes "
                                                 "the other (a codeword is neither sparse nor clustered, and training "
                                                 "or int8 scales per channel split it); give pq a recipe of its own, "
                                                 "from the same baseline")

    def needs_kernels(self, step: PQStep) -> bool:
        return True

    def check_kernels(self, step: PQStep, kernels: list, where: str) -> list[str]:
        chosen = step.layers.choose([(k.name, k.type) for k in kernels], f"{where}.layers")
        return list(pq_blocks(step, kernels, chosen, where).notes)

    def health_hints(self, step: PQStep, steps_per_epoch: int | None) -> list[Hint]:
        hints = []
        if step.quant_noise == 0:
            hints.append(Hint("the layers met their codebooks without Quant-Noise",
                              "train with quant_noise 0.05 to 0.2 (Fan, Stock et al.: iPQ loses less with it)"))
        return hints


def pq_blocks(step: PQStep, kernels: list, chosen: set[str], where: str):
    """The layers the block size divides and that have at least as many blocks as codewords."""
    explicit_b = set(step.block_size.as_dict()) if isinstance(step.block_size, PerLayer) else set()
    explicit_k = frozenset(step.codebook_size.as_dict()) if isinstance(step.codebook_size, PerLayer) else frozenset()
    return plan_blocks(kernels, chosen, where, "block_size", step.block_for, explicit_b, "codebook_size",
                       step.codebook_for, explicit_k)


METHOD = PQ()

__all__ = ["METHOD", "PQ", "PQStep", "code_bits", "pq_blocks"]
