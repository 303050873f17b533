"""model.dc: Deep Compression's third stage, a lossless container of the TFLite file.

Kernels in the paper's sparse format (relative indices) with codebook indices, both
Huffman-coded; the rest of the file compressed. ``python -m compression unpack model.dc``
restores model.tflite byte for byte. See compression/dc/.
"""

from __future__ import annotations

from compression.engine.exporters.base import ExportContext, Exporter


class DeepCompressionExporter(Exporter):
    key = "dc"
    file_name = "model.dc"
    title = "Deep Compression container"
    help = ("A lossless encoding of model.tflite as in Deep Compression: pruned kernels as relative indices, "
            "clustered weights as codebook indices, both Huffman-coded. Restore the TFLite file with "
            "python -m compression unpack model.dc --out model.tflite.")
    rank = 20  # made from the TFLite file

    def write(self, ctx: ExportContext) -> bytes:
        from compression import dc

        blob, accounting = dc.encode(ctx.artifacts["tflite"])
        accounting = dc.with_layers(accounting, ctx.kernel_names)
        order = {name: i for i, name in enumerate(ctx.kernel_names)}  # model order, as the paper's tables
        accounting["tensors"] = sorted(accounting.get("tensors", []),
                                       key=lambda row: order.get(row.get("layer"), len(order)))
        ctx.measured["dc_accounting"] = accounting
        return blob

    def measure(self, blob: bytes, ctx: ExportContext) -> dict:
        return {"dc_bytes": len(blob), "dc": ctx.measured.get("dc_accounting")}


EXPORTER = DeepCompressionExporter()
