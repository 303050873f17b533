"""Iterative product quantization, executed. The declaration (and the method in words) is
compression/recipe/methods/pq.py; the layer wrappers and k-means are compression/engine/quantnoise.py.

1. Optionally fine-tune every chosen layer first (``pretrain_epochs``), inside ``BlockDrop`` where
   ``quant_noise`` > 0 (fairseq's proxy noise), plainly otherwise.
2. For each chosen layer in model order: k-means over its blocks gives a codebook and an
   assignment per block; the layer becomes ``PQKernel`` (its kernel rebuilt from the codebook in
   every pass; a codeword's gradient is the mean over its blocks), and the model fine-tunes
   ``epochs``: the codebooks so far, the layers not yet quantized (still under ``BlockDrop``) and every
   bias.
3. Every layer back to a plain layer holding its reconstructed kernel.
"""

from __future__ import annotations

import numpy as np

from compression.engine.methods.base import Executor, MethodContext, StepResult
from compression.errors import RecipeError
from compression.recipe.methods.pq import PQStep, code_bits, pq_blocks


class PQExecutor(Executor):
    name = "pq"

    def apply(self, model, ds, step: PQStep, ctx: MethodContext) -> StepResult:
        from compression.engine.metrics import kernel_of
        from compression.engine.models import clone, outputs_probabilities
        from compression.engine.quantnoise import blocks_of, kmeans_blocks, strip, wrap_model, wrappers
        from compression.engine.selection import check_per_layer_maps, kernel_infos, select

        current = clone(model)
        chosen = select(current, step.layers, f"{ctx.where}.layers")
        check_per_layer_maps(current, step, ctx.where)
        plan = pq_blocks(step, kernel_infos(current), chosen, ctx.where)
        order = [layer.name for layer in current.layers if layer.name in plan.layers]
        notes = [f"{n}; it stays as it is" for n in plan.notes]
        rng = np.random.default_rng(ctx.seed)
        w = wrappers()
        from_logits = not outputs_probabilities(model)
        codebooks: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # layer -> (codebook, assignments)

        def build():
            def wrap(layer, fresh):
                if layer.name in codebooks:
                    book, assign = codebooks[layer.name]
                    return w["PQKernel"](fresh, book, assign, name=f"pq_{layer.name}")
                if layer.name in plan.layers and step.quant_noise > 0:
                    return w["BlockDrop"](fresh, step.quant_noise, plan.layers[layer.name][0],
                                          name=f"quant_noise_{layer.name}")
                return None

            return wrap_model(current, wrap)

        def settle(wrapped):
            """Plain layers again, the codebooks' training kept."""
            for layer in wrapped.layers:
                if isinstance(layer, w["PQKernel"]):
                    book, assign = codebooks[layer.layer.name]
                    codebooks[layer.layer.name] = (layer.codebook.numpy(), assign)
            return strip(wrapped, lambda wr: _kernel_of(wr, codebooks))

        if step.pretrain_epochs:
            wrapped = build()
            ctx.fit(wrapped, ds, step, epochs=step.pretrain_epochs, from_logits=from_logits)
            current = settle(wrapped)
        for name in order:
            block, k = plan.layers[name]
            kernel = kernel_of(next(layer for layer in current.layers if layer.name == name)).numpy()
            book, assign = kmeans_blocks(blocks_of(kernel, block), k, step.kmeans_iterations, rng)
            codebooks[name] = (book, assign)
            wrapped = build()
            ctx.fit(wrapped, ds, step, from_logits=from_logits)
            current = settle(wrapped)
        # ``current`` holds the kernels as the file will: every block exactly a codeword
        return StepResult(current, notes, self._stats(current, step, plan.layers, codebooks),
                          facts={"codebooks": {n: {"block_size": plan.layers[n][0], "codebook_size": plan.layers[n][1]}
                                               for n in codebooks}})

    @staticmethod
    def _stats(model, step: PQStep, planned: dict, codebooks: dict) -> dict:
        """Target against achieved codebook sizes, and the true size of codes + codebooks (float32 codebooks,
        fixed-width codes; model.dc's accounting shows what its coding of the file achieves)."""
        from compression.engine.quantnoise import blocks_of
        from compression.engine.selection import chosen_kernels

        per_layer, codes_bytes, book_bytes, float_bytes = {}, 0, 0, 0
        for name, k in chosen_kernels(model, set(codebooks)).items():
            block, size = planned[name]
            sub = blocks_of(k, block)
            distinct = int(np.unique(sub, axis=0).shape[0])
            codes = (len(sub) * code_bits(size) + 7) // 8
            book = size * block * 4
            per_layer[name] = {"target": size, "achieved": distinct, "block_size": block, "blocks": len(sub),
                               "code_bits": code_bits(size), "codes_bytes": codes, "codebook_bytes": book,
                               "bits_per_weight": round(8 * (codes + book) / k.size, 4)}
            codes_bytes, book_bytes, float_bytes = codes_bytes + codes, book_bytes + book, float_bytes + 4 * k.size
        if not per_layer:
            raise RecipeError("pq", "quantized no layer")
        return {
            "codebook_size": {"target": max(v["target"] for v in per_layer.values()),
                              "achieved": max(v["achieved"] for v in per_layer.values()),
                              "over": "distinct blocks per layer", "per_layer": per_layer},
            "pq_bytes": {"target": None, "achieved": codes_bytes + book_bytes, "codes": codes_bytes,
                         "codebooks": book_bytes, "float32_bytes": float_bytes,
                         "ratio": round(float_bytes / max(1, codes_bytes + book_bytes), 3),
                         "over": "the quantized layers' kernels: fixed-width codes + float32 codebooks"},
        }


def _kernel_of(wrapper, codebooks) -> np.ndarray:
    """A wrapper's kernel for the plain model: a quantized layer's reconstruction, else its float kernel."""
    from compression.engine.quantnoise import from_blocks

    name = wrapper.layer.name
    if name in codebooks:
        book, assign = codebooks[name]
        return from_blocks(book[assign], tuple(wrapper.kernel_var.shape))
    return wrapper.masked().numpy()


EXECUTOR = PQExecutor()
