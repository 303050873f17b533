"""The TFLite file, in the recipe's export mode: the studio's main artifact."""

from __future__ import annotations

from compression.engine.exporters.base import ExportContext, Exporter


class TFLiteExporter(Exporter):
    key = "tflite"
    file_name = "model.tflite"
    title = "TFLite model"
    help = ("The model as a .tflite flatbuffer for LiteRT: float32, float16 weights, int8 weights with float "
            "activations (int8_dynamic), or int8 throughout (int8_full). Every final figure is read from it.")
    rank = 10
    primary = True

    def write(self, ctx: ExportContext) -> bytes:
        if "tflite" in ctx.reuse:
            return ctx.reuse["tflite"]
        from compression.engine.export import to_tflite
        from compression.engine.models import with_input_scaling

        model = ctx.model if not ctx.input_scale else with_input_scaling(ctx.model, ctx.input_scale)
        return to_tflite(model, ctx.mode, ctx.ds.x_train)

    def measure(self, blob: bytes, ctx: ExportContext) -> dict:
        from compression.engine.measure import measure_file

        measured = measure_file(blob, ctx.ds, ctx.latency_runs, ctx.kernel_names, ctx.mode)
        ctx.measured["tflite_measured"] = measured  # weights and predictions, for histograms and the gallery
        return measured.metrics


EXPORTER = TFLiteExporter()
