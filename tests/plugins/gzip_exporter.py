"""A throwaway exporter with its own size accounting: model.tflite gzipped.

It applies only to int8 exports, adds ``gz_bytes`` to report.json's final figures (its ratio taken
against the baseline's raw TFLite file) and accounts for its bytes per layer: each kernel deflated on
its own, the rest of the file as one block. One module: the declaration and the writer, registered
with ``register()``.
"""

from __future__ import annotations

import gzip
import zlib

from compression.engine import exporters as writers
from compression.engine.exporters.base import ExportContext, Figures, Writer, Written
from compression.recipe import exporters
from compression.recipe.exporter import Accounting, Exporter, SizeFigure


class GzipExporter(Exporter):
    key = "gz"
    file_name = "model.tflite.gz"
    title = "TFLite file, gzipped"
    help = "model.tflite compressed with gzip, for a server that sends it as it is."
    rank = 30
    source = "tflite"
    sizes = (SizeFigure("gz_bytes", "TFLite gzip", "the TFLite file gzipped", "#e45756", ratio_to="tflite_bytes",
                        stages=False),)
    accounting = Accounting(field="gz", title="Where the gzip bytes go", caption="each kernel deflated on its own",
                            parts=(("deflated kernel", "deflated_bytes", "#e45756"),),
                            rest=("everything else", "rest_bytes", "#bab0ac"),
                            columns=(("weights", "weights", ",.0f"),), file_field="gz_bytes")

    def applies(self, recipe) -> bool:
        return recipe.export.value.startswith("int8")


class GzipWriter(Writer):
    key = "gz"

    def write(self, ctx: ExportContext) -> Written:
        from compression.tflite import kernels, reader
        from compression.tflite.reader import ITEM_BYTES

        tfl = ctx.written["tflite"].blob
        blob = gzip.compress(tfl, mtime=0)
        model = reader.read(tfl)
        rows = []
        for ref in kernels.kernel_refs(model, ctx.kernel_names):
            offset, length = model.data(ref.kernel)
            deflated = len(zlib.compress(tfl[offset:offset + length], 9))
            rows.append({"layer": ref.layer or ref.kernel.name, "tensor": ref.kernel.name, "deflated_bytes": deflated,
                         "bytes": deflated, "raw_bytes": length, "weights": length // ITEM_BYTES[ref.kernel.type]})
        accounting = {"gz_bytes": len(blob), "tflite_bytes": len(tfl), "tensors": rows,
                      "rest_bytes": len(blob) - sum(r["bytes"] for r in rows)}
        return Written(blob, {"accounting": accounting})

    def measure(self, written: Written, ctx: ExportContext) -> Figures:
        return Figures({"gz_bytes": len(written.blob), "gz": written.facts["accounting"]})


def register() -> None:
    exporters.register(GzipExporter(), replace=True)
    writers.register(GzipWriter(), replace=True)


def unregister() -> None:
    exporters.unregister("gz")
    writers.unregister("gz")
