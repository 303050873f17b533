"""model.tflite, declared: the studio's main artifact (the writer is compression/engine/exporters/tflite.py)."""

from __future__ import annotations

from compression.recipe.exporter import Exporter, SizeFigure


class TFLiteExporter(Exporter):
    key = "tflite"
    file_name = "model.tflite"
    title = "TFLite model"
    help = ("The model as a .tflite flatbuffer for LiteRT: float32, float16 weights, int8 weights with float "
            "activations (int8_dynamic), or int8 throughout (int8_full). Every final figure is read from it.")
    rank = 10
    primary = True
    sizes = (
        SizeFigure("tflite_bytes", "TFLite", "the raw TFLite file", "#4c78a8", ratio_to="tflite_bytes"),
        SizeFigure("tflite_zip_bytes", "TFLite zip", "the TFLite file zipped (deflate): what a download or an app "
                   "bundle costs, and where pruned zeros pay off", "#f58518", ratio_to="tflite_zip_bytes"),
    )


EXPORTER = TFLiteExporter()
