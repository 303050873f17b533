"""model_int4.tflite, declared: 4- and 2-bit weights stored as int4 (the writer is
compression/engine/exporters/int4.py, through Google's ai-edge-quantizer)."""

from __future__ import annotations

import importlib.util

from compression.recipe.exporter import Exporter, SizeFigure

INT4_BITS = 4  # the narrowest integer LiteRT runs; 2-bit weights are stored in it too (three of its levels)


def low_bit_steps(recipe) -> list:
    """The steps of a recipe that ask for weights of at most 4 bits (their ``weight_bits`` field)."""
    return [s for s in recipe.steps if isinstance(getattr(s, "weight_bits", None), int) and s.weight_bits <= INT4_BITS]


class Int4Exporter(Exporter):
    key = "int4"
    file_name = "model_int4.tflite"
    title = "int4 TFLite"
    help = ("The weights of a 4- or 2-bit quantize step stored as int4 (two a byte, one scale per output channel or "
            "per layer, as the step trained them), written by Google's ai-edge-quantizer as a weight-only file: "
            "LiteRT dequantizes them to float32 when it runs the file. model.tflite stores the same levels in "
            "int8; model.dc charges their real bits.")
    rank = 15
    sizes = (
        SizeFigure("int4_bytes", "int4 TFLite", "model_int4.tflite: the weights stored as int4 (ai-edge-quantizer)",
                   "#b279a2", ratio_to="tflite_bytes", stages=False),
    )

    def applies(self, recipe) -> bool:
        return bool(low_bit_steps(recipe)) and importlib.util.find_spec("ai_edge_quantizer") is not None


EXPORTER = Int4Exporter()
