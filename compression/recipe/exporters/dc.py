"""model.dc, declared: Deep Compression's third stage, a lossless container of the TFLite file
(the writer is compression/engine/exporters/dc.py, the codec compression/dc/)."""

from __future__ import annotations

from compression.recipe.exporter import Accounting, Exporter, SizeFigure


class DeepCompressionExporter(Exporter):
    key = "dc"
    file_name = "model.dc"
    title = "Deep Compression container"
    help = ("A lossless encoding of model.tflite as in Deep Compression: pruned kernels as relative indices, "
            "clustered weights as codebook indices, both Huffman-coded. Restore the TFLite file with "
            "python -m compression unpack model.dc --out model.tflite.")
    rank = 20
    source = "tflite"
    sizes = (
        SizeFigure("dc_bytes", "model.dc", "the Deep Compression container of the exported file (lossless: unpack "
                   "restores the TFLite file); its ratio is to the baseline's raw TFLite file, as the paper counts",
                   "#54a24b", ratio_to="tflite_bytes", stages=False),
    )
    accounting = Accounting(
        field="dc", title="Where the bits go",
        caption=("model.dc, the Deep Compression container of the exported file: per layer, the bytes of the "
                 "relative indices (where the kept weights are), of the weights as codebook indices, and of the "
                 "codebook and Huffman tables; everything else (graph, biases, scales) compressed as one block. "
                 "`python -m compression unpack model.dc --out model.tflite` restores the TFLite file byte for "
                 "byte. Weight and index bits are per kept weight for the sparse format (the paper's figure), per "
                 "weight for a dense or raw tensor."),
        parts=(("index", "index_bytes", "#4c78a8"), ("weights", "weight_bytes", "#f58518"),
               ("codebook", "codebook_bytes", "#54a24b")),
        rest=("graph + biases", "graph_bytes", "#bab0ac"),
        columns=(("encoding", "encoding", "s"), ("weights", "weights", ",.0f"), ("kept", "kept_pct", ".1f%"),
                 ("bits per", "bits_per", "s"), ("weight bits", "weight_bits", ".2f"),
                 ("index bits", "index_bits", ".2f")),
        file_field="dc_bytes",
    )


EXPORTER = DeepCompressionExporter()
