"""Quantization-aware training, declared: its parameters, its variants and ordering facts.

The executor (tfmot.quantization.keras, in the variant that keeps earlier work) is
compression/engine/methods/quantize.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.errors import RecipeError
from compression.recipe.choices import ExportMode
from compression.recipe.method import Method, StepConfig
from compression.recipe.params import LayerSelection, param


@dataclass(frozen=True)
class QuantizeStep(StepConfig):
    method = "quantize"

    layers: LayerSelection = param(LayerSelection(), "which layers to train for int8", kind="layers")
    preserve: bool = param(True, "keep earlier sparsity and clusters (PQAT, CQAT, PCQAT); false only with "
                           "allow_unsafe_order, to show what is lost", advanced=True)
    # tfmot's QAT example: one epoch, large batches
    epochs: int = param(1, "quantization-aware fine-tuning epochs", lo=1, hi=1000, unit="epochs")
    batch_size: int = param(500, "samples per optimizer step while fine-tuning", lo=1, hi=65536, unit="samples")
    learning_rate: float = param(1e-4, "Adam's learning rate while fine-tuning", lo=0, hi=1, lo_open=True)

    @property
    def target_text(self) -> str:
        return "int8"


class Quantize(Method):
    name = "quantize"
    rank = 30
    title = "Quantize (QAT)"
    help = ("Quantization-aware training simulates int8 weights and activations while fine-tuning, so the "
            "model learns to live with the rounding; the exported file then stores int8 with the ranges it "
            "learned. After pruning or clustering it runs a preserving variant that keeps their work.")
    step_type = QuantizeStep
    produces_qat = True
    establishes = ("qat_ranges",)
    preserve_field = "preserve"
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
    }
    variant_labels = {"qat": "QAT", "pqat": "PQAT", "cqat": "CQAT", "pcqat": "PCQAT"}

    def variant(self, step: QuantizeStep, intact: frozenset[str]) -> str:
        if "sparsity" in intact and "clusters" in intact:
            return "pcqat"
        if "sparsity" in intact:
            return "pqat"
        if "clusters" in intact:
            return "cqat"
        return "qat"

    def variant_label(self, variant: str | None) -> str:
        return self.variant_labels.get(variant or "", "")

    def describe(self, step, variant: str, kept: list[str]) -> str:
        text = self.variants[variant]
        return f"{text.split(':')[0]}: keeps {' and '.join(kept)}" if kept and variant != "qat" else text

    def check_recipe(self, step, recipe, where: str) -> None:
        if recipe.export in (ExportMode.FLOAT32, ExportMode.FLOAT16):
            raise RecipeError("export", f"{recipe.export.value} would throw away the quantize step's int8 training; "
                                        "choose int8_dynamic or int8_full, or remove the quantize step")


METHOD = Quantize()
