"""model.dc, written from model.tflite with the Deep Compression codec (compression/dc/)."""

from __future__ import annotations

from compression.engine.exporters.base import ExportContext, Figures, Writer, Written


class DeepCompressionWriter(Writer):
    key = "dc"

    def write(self, ctx: ExportContext) -> Written:
        from compression import dc

        blob, accounting = dc.encode(ctx.written["tflite"].blob, ctx.kernel_names)
        return Written(blob, {"accounting": accounting})

    def measure(self, written: Written, ctx: ExportContext) -> Figures:
        return Figures({"dc_bytes": len(written.blob), "dc": written.facts.get("accounting")})


WRITER = DeepCompressionWriter()
