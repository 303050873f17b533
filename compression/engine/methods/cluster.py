"""Weight clustering, executed: tfmot.clustering.keras.cluster_weights, fine-tuned while clustered.

The declaration (parameters, ordering facts) is compression/recipe/methods/cluster.py.
"""

from __future__ import annotations

from compression.engine.methods.base import Executor, MethodContext, StepResult
from compression.recipe.choices import CentroidInit
from compression.recipe.methods.cluster import ClusterStep


class ClusterExecutor(Executor):
    name = "cluster"

    def apply(self, model, ds, step: ClusterStep, ctx: MethodContext) -> StepResult:
        if step.quant_noise > 0:  # Quant-Noise replaces tfmot's clustering wrapper (engine/quantnoise.py)
            from compression.engine.quantnoise import cluster_with_noise

            return cluster_with_noise(model, ds, step, ctx)
        import tensorflow_model_optimization as tfmot
        import tf_keras

        from compression.engine.models import clone, outputs_probabilities
        from compression.engine.selection import check_per_layer_maps, select, skipped_layers

        clustering = tfmot.clustering.keras
        init = {
            CentroidInit.LINEAR: clustering.CentroidInitialization.LINEAR,
            CentroidInit.RANDOM: clustering.CentroidInitialization.RANDOM,
            CentroidInit.DENSITY_BASED: clustering.CentroidInitialization.DENSITY_BASED,
            CentroidInit.KMEANS_PLUS_PLUS: clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
        }[step.cluster_centroids_init]
        base = clone(model)
        names = select(base, step.layers, f"{ctx.where}.layers")
        check_per_layer_maps(base, step, ctx.where)
        from compression.engine.metrics import kernel_of

        skipped = skipped_layers(base, names, "cluster")
        notes = []
        if skipped:
            names = names - set(skipped)
            notes.append("not clustered: " + "; ".join(f"{n} ({why})" for n, why in skipped.items()))
        for layer in base.layers:
            kernel = kernel_of(layer)
            if layer.name in names and kernel is not None and int(kernel.shape.num_elements()) < step.clusters_for(layer.name):
                names = names - {layer.name}
                notes.append(f"{layer.name} skipped: it has fewer weights than {step.clusters_for(layer.name)} clusters")
                skipped[layer.name] = f"fewer weights than {step.clusters_for(layer.name)} clusters"
        if not names:
            from compression.errors import RecipeError

            raise RecipeError(f"{ctx.where}.layers", "selects no layer tfmot can cluster")

        def wrap(layer):
            if layer.name not in names:
                return layer
            params = {"number_of_clusters": step.clusters_for(layer.name), "cluster_centroids_init": init}
            if ctx.variant == "sparsity_preserving_cluster":
                params["preserve_sparsity"] = True
            return clustering.cluster_weights(layer, **params)

        # Layers left unclustered are held still while the others fine-tune, so pruned zeros in them stay zero.
        frozen = [layer for layer in base.layers if layer.name in skipped and layer.trainable]
        for layer in frozen:
            layer.trainable = False
        if frozen:
            notes.append(f"{len(frozen)} unclustered layer(s) held unchanged while fine-tuning, so their zeros stay")
        wrapped = tf_keras.models.clone_model(base, clone_function=wrap)
        ctx.fit(wrapped, ds, step, from_logits=not outputs_probabilities(base))
        out = clustering.strip_clustering(wrapped)
        for layer in out.layers:
            if layer.name in {f.name for f in frozen}:
                layer.trainable = True
        stats = self._stats(out, step, names)
        for name, why in skipped.items():
            stats["number_of_clusters"]["per_layer"][name] = {"skipped": why}
        return StepResult(out, notes, stats)

    @staticmethod
    def _stats(model, step: ClusterStep, names: set[str]) -> dict:
        import numpy as np

        from compression.engine.selection import chosen_kernels

        # distinct nonzero values: the centroids in use (pruned zeros are kept apart)
        per_layer = {name: {"target": step.clusters_for(name), "achieved": int(np.unique(k[k != 0]).size)}
                     for name, k in chosen_kernels(model, names).items()}
        worst = max((v["achieved"] - v["target"] for v in per_layer.values()), default=0)
        achieved = max((v["achieved"] for v in per_layer.values()), default=None)
        return {"number_of_clusters": {"target": max(v["target"] for v in per_layer.values()) if per_layer else None,
                                       "achieved": achieved, "over_target_by": worst, "per_layer": per_layer}}


EXECUTOR = ClusterExecutor()
