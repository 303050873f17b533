"""model.tflite, written and measured: every final figure is read from or run on this file."""

from __future__ import annotations

from compression.engine.exporters.base import ExportContext, Figures, Writer, Written


class TFLiteWriter(Writer):
    key = "tflite"

    def write(self, ctx: ExportContext) -> Written:
        if "tflite" in ctx.reuse:
            return Written(ctx.reuse["tflite"])
        from compression.engine.export import to_tflite
        from compression.engine.models import with_input_scaling

        model = ctx.model if not ctx.input_scale else with_input_scaling(ctx.model, ctx.input_scale)
        return Written(to_tflite(model, ctx.mode, ctx.ds.x_train))

    def measure(self, written: Written, ctx: ExportContext) -> Figures:
        from compression.engine.measure import measure_file

        measured = measure_file(written.blob, ctx.ds, ctx.latency_runs, ctx.kernel_names, ctx.mode, ctx.reference,
                                timed=False)  # the pipeline times every file of the run at its end, in one wait
        return Figures(measured.metrics, measured)


WRITER = TFLiteWriter()
