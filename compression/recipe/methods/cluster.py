"""Weight clustering, declared: its parameters and ordering facts.

The executor (tfmot's cluster_weights, fine-tuned while clustered) is
compression/engine/methods/cluster.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.recipe.blocks import plan_blocks
from compression.recipe.blocks import weights_text as _weights
from compression.recipe.choices import CentroidInit
from compression.recipe.method import Method, StepConfig
from compression.recipe.params import LayerSelection, PerLayer, param, per_layer_value

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
    quant_noise: float = param(0.0, "Quant-Noise: instead of snapping every weight to its centroid in every pass "
                               "(tfmot), snap this share of weight blocks in each pass (straight-through) and let the "
                               "rest train freely; the centroids follow the weights (k-means after every epoch) and "
                               "every weight is snapped at the end; 0 = off", lo=0, hi=1, unit="fraction",
                               label="Quant-Noise share")
    quant_noise_block_size: int = param(1, "Quant-Noise: weights per block (consecutive weights of one output "
                                        "channel), snapped together or not at all", lo=1, hi=256, unit="weights",
                                        advanced=True, label="Quant-Noise block")
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
        "qat_ranges": "clustering after quantization-aware training changes the weights QAT trained for int8 "
                      "and drops its learned quantization ranges",
        "codebooks": "clustering after product quantization moves every weight of a codeword to a centroid, "
                     "so the codewords are lost",
    }
    preserves = {
        "sparsity": "clustering without sparsity preservation moves pruned zeros to the nearest centroid, "
                    "so the sparsity is lost",
    }
    variants = {
        "cluster": "Clustering",
        "sparsity_preserving_cluster": "Clustering will run sparsity-preserving: zeros stay zero",
    }
    variant_labels = {"sparsity_preserving_cluster": "sparsity-preserving"}
    preserve_field = "preserve"
    establishes = ("clusters",)
    strength = "number_of_clusters"

    def variant(self, step: ClusterStep, intact: frozenset[str]) -> str:
        return "sparsity_preserving_cluster" if "sparsity" in intact else "cluster"

    def describe(self, step: ClusterStep, variant: str, kept: list[str]) -> str:
        noise = (f", with Quant-Noise: {step.quant_noise:.0%} of the blocks of "
                 f"{_weights(step.quant_noise_block_size)} snapped to their centroid in each pass"
                 if step.quant_noise > 0 else "")
        if variant == "sparsity_preserving_cluster":
            # Quant-Noise sits after pruning here: zeros are held at zero and never drawn as noise
            return f"{self.variants[variant]}; {step.target_text}{noise}"
        return f"Clustering into {step.target_text} per layer{noise}"

    def needs_kernels(self, step: ClusterStep) -> bool:
        return step.quant_noise > 0

    def check_kernels(self, step: ClusterStep, kernels: list, where: str) -> list[str]:
        if not self.needs_kernels(step):
            return []
        chosen = step.layers.choose([(k.name, k.type) for k in kernels], f"{where}.layers")
        return list(plan_blocks(kernels, chosen, where, "quant_noise_block_size",
                                lambda _name: step.quant_noise_block_size, set()).notes)


METHOD = Cluster()
