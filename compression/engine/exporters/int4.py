"""model_int4.tflite, written and measured: the final model's chosen kernels stored as int4 by Google's
ai-edge-quantizer (weight-only: DEQUANTIZE ops feed float kernels), from the float32 conversion of the
final model. The 4- or 2-bit step left those kernels on a symmetric grid of 15 or 3 levels with the same
scales ai-edge-quantizer computes (max |w| / 7 per output channel or per layer), so the int4 file
holds exactly the trained values. Its figures are read from and run on the file.
"""

from __future__ import annotations

import re

from compression.engine.exporters.base import ExportContext, Figures, Writer, Written


class Int4Writer(Writer):
    key = "int4"

    def write(self, ctx: ExportContext) -> Written:
        from ai_edge_quantizer import qtyping, quantizer

        from compression.engine.export import to_tflite
        from compression.engine.models import with_input_scaling
        from compression.engine.selection import kernel_infos
        from compression.recipe.blocks import BLOCK_TYPES
        from compression.recipe.choices import ExportMode, Granularity
        from compression.recipe.exporters.int4 import low_bit_steps

        step = low_bit_steps(ctx.recipe)[0]
        kernels = kernel_infos(ctx.model)
        chosen = step.layers.choose([(k.name, k.type) for k in kernels], "layers")
        names = [k.name for k in kernels if k.name in chosen and k.type in BLOCK_TYPES]
        model = ctx.model if not ctx.input_scale else with_input_scaling(ctx.model, ctx.input_scale)
        q = quantizer.Quantizer(to_tflite(model, ExportMode.FLOAT32))
        granularity = (qtyping.QuantGranularity.CHANNELWISE if step.granularity == Granularity.PER_CHANNEL
                       else qtyping.QuantGranularity.TENSORWISE)
        # ai-edge-quantizer matches an op by its output tensor's name ("model/fc1/MatMul;model/fc1/Relu")
        regex = ".*(^|/)(" + "|".join(re.escape(n) for n in names) + ")/.*"
        q.add_weight_only_config(regex=regex, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                 num_bits=4, granularity=granularity)
        blob = bytes(q.quantize().quantized_model)
        return Written(blob, {"layers": names, "bits": step.weight_bits, "granularity": str(step.granularity)})

    def measure(self, written: Written, ctx: ExportContext) -> Figures:
        from compression.engine.measure import measure_file
        from compression.tflite.reader import INT4, read

        m = measure_file(written.blob, ctx.ds, ctx.latency_runs, ctx.kernel_names, ctx.mode, ctx.reference).metrics
        model = read(written.blob)
        int4_tensors = {t.name for t in model.tensors if t.type == INT4}
        layers = [{"name": row["name"], "unique_values": row["unique_values"],
                   "unique_values_per_channel": row["unique_values_per_channel"], "sparsity": row["sparsity"]}
                  for row in m["layers"]]
        return Figures({"int4_bytes": len(written.blob), "int4": {
            "accuracy": m["accuracy"], "tflite_bytes": len(written.blob), "tflite_zip_bytes": m["tflite_zip_bytes"],
            "latency_ms": m["latency_ms"], "int4_tensors": len(int4_tensors), "layers": layers,
            "weight_bits": written.facts.get("bits"), "granularity": written.facts.get("granularity"),
            "stored": "int4 weights, weight-only: LiteRT dequantizes them to float32 at run time"}})


WRITER = Int4Writer()
