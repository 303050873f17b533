"""Quantization, declared: int8 quantization-aware training (tfmot's scheme, in the variant that keeps
earlier work), 4- and 2-bit weights (QAT through a tfmot quantize config), Quant-Noise, and
post-training rounding at the same bits as the no-training control.

The executor is compression/engine/methods/quantize.py; Quant-Noise's layer wrappers are
compression/engine/quantnoise.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.errors import RecipeError
from compression.recipe.blocks import plan_blocks
from compression.recipe.blocks import weights_text as _weights
from compression.recipe.choices import ExportMode, Granularity
from compression.recipe.method import Hint, Method, StepConfig
from compression.recipe.params import LayerSelection, param

WEIGHT_BITS = (8, 4, 2)
# The per-layer block size of Quant-Noise: one number for every layer.
NOISE_BLOCK = dict(lo=1, hi=256, unit="weights", advanced=True)


def levels(bits: int) -> int:
    """Distinct values one scale gives at ``bits`` (symmetric, zero exact): 255, 15, 3."""
    return 2 * (2 ** (bits - 1) - 1) + 1


@dataclass(frozen=True)
class QuantizeStep(StepConfig):
    method = "quantize"

    layers: LayerSelection = param(LayerSelection(), "which layers to quantize", kind="layers")
    weight_bits: int = param(8, "bits per weight: 8 (tfmot's int8 scheme), 4 or 2; 4 and 2 bits train through a "
                             "tfmot quantize config (weights only) and are stored as int8 holding that many levels, "
                             "or as int4 in model_int4.tflite (2 bits: the three values -s, 0, +s)",
                             lo=2, hi=8, unit="bits", label="Weight bits")
    granularity: Granularity = param(Granularity.PER_CHANNEL, "below 8 bits, for Quant-Noise and for rounding: one "
                                     "scale per output channel (LiteRT's int8 and int4 kernels use one) or one per "
                                     "layer; tfmot's int8 QAT keeps its own scheme", advanced=True,
                                     label="Scales")
    train: bool = param(True, "false: round the weights to weight_bits without any training (the control QAT and "
                        "Quant-Noise are measured against)", label="Train (QAT or Quant-Noise)")
    quant_noise: float = param(0.0, "Quant-Noise: the share of weight blocks quantized in each training pass (the "
                               "rest stay float and get clean gradients); 0 = off: QAT quantizes every weight in "
                               "every pass; at export every weight is quantized", lo=0, hi=1, unit="fraction",
                               label="Quant-Noise share")
    quant_noise_block_size: int = param(1, "Quant-Noise: weights per block (consecutive weights of one output "
                                        "channel), quantized together or not at all", label="Quant-Noise block",
                                        **NOISE_BLOCK)
    preserve: bool = param(True, "keep earlier sparsity and clusters (PQAT, CQAT, PCQAT; below 8 bits pruned "
                           "weights are held at zero); false only with allow_unsafe_order, to show what is lost",
                           advanced=True)
    # tfmot's QAT example: one epoch, large batches
    epochs: int = param(1, "quantization-aware fine-tuning epochs", lo=1, hi=1000, unit="epochs")
    batch_size: int = param(500, "samples per optimizer step while fine-tuning", lo=1, hi=65536, unit="samples")
    learning_rate: float = param(1e-4, "Adam's learning rate while fine-tuning", lo=0, hi=1, lo_open=True)

    def check(self, where: str) -> None:
        if self.weight_bits not in WEIGHT_BITS:
            raise RecipeError(f"{where}.weight_bits", f"{self.weight_bits} is not one of "
                                                      f"{', '.join(map(str, WEIGHT_BITS))}")
        if self.quant_noise > 0 and not self.train:
            raise RecipeError(f"{where}.quant_noise", "Quant-Noise is a way of training; with train false there is "
                                                      "none: set quant_noise to 0 or train to true")

    @property
    def mode(self) -> str:
        """How the weights are quantized: "qat" (tfmot int8), "qat_lowbit", "quant_noise" or "rounded"."""
        if not self.train:
            return "rounded"
        if self.quant_noise > 0:
            return "quant_noise"
        return "qat" if self.weight_bits == 8 else "qat_lowbit"

    @property
    def target_text(self) -> str:
        return "int8" if self.weight_bits == 8 else f"{self.weight_bits}-bit weights"


class Quantize(Method):
    name = "quantize"
    rank = 30
    title = "Quantize (QAT, Quant-Noise)"
    help = ("Quantization-aware training simulates int8 weights and activations while fine-tuning, so the "
            "model learns to live with the rounding; the exported file then stores int8 with the ranges it "
            "learned. After pruning or clustering it runs a preserving variant that keeps their work. 4- and "
            "2-bit weights train the same way through a tfmot quantize config; Quant-Noise (Fan, Stock et al. "
            "2021) quantizes only a random share of weight blocks in each pass, so most weights get clean "
            "gradients; train false rounds without training, the control.")
    step_type = QuantizeStep
    produces_qat = True  # its stage is measured on the int8 file it exports to
    establishes = ("qat_ranges",)
    preserve_field = "preserve"
    undoes = {
        "codebooks": "quantizing after product quantization gives each channel its own scale, so the codewords "
                     "shared across channels are lost",
    }
    preserves = {
        "sparsity": "quantization-aware training without prune preservation lets pruned weights grow back, "
                    "so the sparsity is lost",
        "clusters": "quantization-aware training without cluster preservation trains every weight freely, "
                    "so the clusters are lost",
    }
    variants = {
        "qat": "Quantization-aware training for int8",
        "pqat": "QAT will run as PQAT (prune-preserving): keeps the sparsity",
        "cqat": "QAT will run as CQAT (cluster-preserving): keeps the clusters",
        "pcqat": "QAT will run as PCQAT: keeps the sparsity and the clusters",
        "qat_lowbit": "Quantization-aware training of the weights at 4 or 2 bits (a tfmot quantize config)",
        "quant_noise": "Quant-Noise: a random share of weight blocks quantized in each pass, every weight at export",
        "rounded": "Post-training rounding of the weights, no training (the control)",
    }
    variant_labels = {"qat": "QAT", "pqat": "PQAT", "cqat": "CQAT", "pcqat": "PCQAT", "qat_lowbit": "low-bit QAT",
                      "quant_noise": "Quant-Noise", "rounded": "rounded"}

    def variant(self, step: QuantizeStep, intact: frozenset[str]) -> str:
        if step.mode != "qat":
            return step.mode
        if "sparsity" in intact and "clusters" in intact:
            return "pcqat"
        if "sparsity" in intact:
            return "pqat"
        if "clusters" in intact:
            return "cqat"
        return "qat"

    def variant_label(self, variant: str | None) -> str:
        return self.variant_labels.get(variant or "", "")

    def describe(self, step: QuantizeStep, variant: str, kept: list[str]) -> str:
        if variant in ("qat", "pqat", "cqat", "pcqat"):
            text = self.variants[variant]
            return f"{text.split(':')[0]}: keeps {' and '.join(kept)}" if kept and variant != "qat" else text
        scales = "one scale per output channel" if step.granularity == Granularity.PER_CHANNEL else \
            "one scale per layer"
        bits = f"{step.weight_bits}-bit weights ({levels(step.weight_bits)} levels, {scales})"
        if variant == "rounded":
            text = f"Post-training rounding to {bits}, no training (the control)"
        elif variant == "quant_noise":
            text = (f"Quant-Noise at {bits}: {step.quant_noise:.0%} of the blocks of "
                    f"{_weights(step.quant_noise_block_size)} quantized in each pass (straight-through), "
                    "every weight at export")
        else:
            text = f"QAT of {bits} through a tfmot quantize config (weights only; activations as the export makes them)"
        if kept:
            # where Quant-Noise and the rounding sit with pruning: after it, never reviving a pruned weight
            text += f"; keeps {' and '.join(kept)}: pruned weights are held at zero, which every level keeps"
        return text

    def check_recipe(self, step: QuantizeStep, recipe, where: str) -> None:
        if recipe.export in (ExportMode.FLOAT32, ExportMode.FLOAT16):
            raise RecipeError("export", f"{recipe.export.value} would throw away the quantize step's int8 training; "
                                        "choose int8_dynamic or int8_full, or remove the quantize step")
        if step.mode in ("qat_lowbit", "quant_noise") and not recipe.allow_unsafe_order:
            from compression.recipe import methods

            index = next(i for i, s in enumerate(recipe.steps) if s is step)
            if any("clusters" in methods.get(s.method).establishes for s in recipe.steps[:index]):
                raise RecipeError(f"{where}.weight_bits" if step.mode == "qat_lowbit" else f"{where}.quant_noise",
                                  "training the weights after clustering would train the clusters away (tfmot's "
                                  "cluster-preserving QAT is int8 only): round them instead (train false), or "
                                  "give clustering its Quant-Noise")

    def needs_kernels(self, step: QuantizeStep) -> bool:
        return step.mode == "quant_noise"

    def check_kernels(self, step: QuantizeStep, kernels: list, where: str) -> list[str]:
        if not self.needs_kernels(step):
            return []
        chosen = step.layers.choose([(k.name, k.type) for k in kernels], f"{where}.layers")
        return list(noise_blocks(step, kernels, chosen, where).notes)

    def plan_notes(self, step: QuantizeStep, steps_per_epoch: int, where: str) -> list[str]:
        notes = []
        if step.weight_bits < 8:
            notes.append(f"{step.weight_bits}-bit weights are stored in model.tflite as int8 holding "
                         f"{levels(step.weight_bits)} levels per {'channel' if step.granularity == 'per_channel' else 'layer'} "
                         "(model.dc charges their real bits), and as int4 in model_int4.tflite")
            notes.append("with int8_dynamic, layers under 1,024 weights stay float32 in model.tflite (the converter's "
                         "rule): they hold the same levels as floats, counted over the whole layer; int8_full stores "
                         "them as int8 too")
        return notes

    def health_hints(self, step: QuantizeStep, steps_per_epoch: int | None) -> list[Hint]:
        if step.mode == "rounded" and step.weight_bits < 8:
            return [Hint(f"the weights were rounded to {step.weight_bits} bits without any training",
                         "train them (QAT, or Quant-Noise with quant_noise 0.1 to 0.5)")]
        return []


def noise_blocks(step, kernels: list, chosen: set[str], where: str):
    """The layers Quant-Noise's block size fits (recipe.blocks.plan_blocks)."""
    return plan_blocks(kernels, chosen, where, "quant_noise_block_size", lambda _name: step.quant_noise_block_size,
                       set())


METHOD = Quantize()
