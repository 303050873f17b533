"""Weight clustering (tfmot.clustering.keras.cluster_weights), fine-tuned while clustered."""

from __future__ import annotations

from dataclasses import dataclass

from compression.choices import CentroidInit
from compression.engine.methods.base import (
    LayerSelection,
    Method,
    MethodContext,
    PerLayer,
    StepConfig,
    StepResult,
    param,
    per_layer_value,
)

DEFAULT_CLUSTERS = 16


@dataclass(frozen=True)
class ClusterStep(StepConfig):
    method = "cluster"

    number_of_clusters: int | PerLayer = param(DEFAULT_CLUSTERS, "distinct values (centroids) per layer: 16 means "
                                               "4-bit indices; a number, or {layer name: number} per layer",
                                               kind="per_layer_int", lo=2, hi=256, unit="clusters",
                                               label="Clusters per layer")
    cluster_centroids_init: CentroidInit = param(CentroidInit.KMEANS_PLUS_PLUS, "where the centroids start: "
                                                 "kmeans_plus_plus is tfmot's recommendation; linear spreads them "
                                                 "evenly between the smallest and largest weight",
                                                 label="Centroid initialisation")
    layers: LayerSelection = param(LayerSelection(), "which layers with weights to cluster", kind="layers")
    preserve: bool = param(True, "keep earlier sparsity (sparsity-preserving clustering); false only with "
                           "allow_unsafe_order, to show what is lost", advanced=True)
    epochs: int = param(1, "fine-tuning epochs while clustered", lo=1, hi=1000, unit="epochs")
    # tfmot's clustering example fine-tunes at 1e-5
    learning_rate: float = param(1e-5, "Adam's learning rate while fine-tuning", lo=0, hi=1, lo_open=True)

    def clusters_for(self, layer: str) -> int:
        return per_layer_value(self.number_of_clusters, layer, DEFAULT_CLUSTERS)

    @property
    def target_text(self) -> str:
        if isinstance(self.number_of_clusters, PerLayer):
            return ("per-layer clusters (" + ", ".join(f"{k} {v}" for k, v in self.number_of_clusters.items)
                    + f", other layers {DEFAULT_CLUSTERS})")
        return f"{self.number_of_clusters} clusters"


class Cluster(Method):
    name = "cluster"
    rank = 20
    title = "Cluster"
    help = ("Weight clustering replaces each layer's weights by a few shared values (centroids) and fine-tunes "
            "the centroids. A file then needs only a small index per weight plus a codebook: 16 clusters are "
            "4-bit indices, as in Deep Compression's trained quantization.")
    step_type = ClusterStep
    undoes = {
        "quantize": "clustering after quantization-aware training changes the weights QAT trained for int8 "
                    "and drops its learned quantization ranges",
    }
    preserves = {
        "prune": "clustering without sparsity preservation moves pruned zeros to the nearest centroid, "
                 "so the sparsity is lost",
    }
    variants = {
        "cluster": "Clustering",
        "sparsity_preserving_cluster": "Clustering will run sparsity-preserving: zeros stay zero",
    }

    def variant(self, step: ClusterStep, intact: frozenset[str]) -> str:
        return "sparsity_preserving_cluster" if "prune" in intact else "cluster"

    def describe(self, step: ClusterStep, variant: str, kept: list[str]) -> str:
        if variant == "sparsity_preserving_cluster":
            return f"{self.variants[variant]}; {step.target_text}"
        return f"Clustering into {step.target_text} per layer"

    def apply(self, model, ds, step: ClusterStep, ctx: MethodContext) -> StepResult:
        import tensorflow_model_optimization as tfmot
        import tf_keras

        from compression.engine.models import clone, fit, outputs_probabilities
        from compression.engine.selection import check_per_layer_maps, select

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
        from compression.engine.methods.prune import skipped_layers

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
        fit(wrapped, ds, **step.training(), report=ctx.report, from_logits=not outputs_probabilities(base))
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


METHOD = Cluster()
