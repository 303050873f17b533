"""Weight clustering with tfmot, fine-tuned while clustered so every kernel keeps its centroids."""

from __future__ import annotations

import compression  # noqa: F401
import tensorflow_model_optimization as tfmot
import tf_keras

from compression.choices import CentroidInit, Variant
from compression.data import Dataset
from compression.engine.models import BatchReport, clone, fit, outputs_probabilities
from compression.recipe import ClusterStep
from compression.engine.selection import select

clustering = tfmot.clustering.keras
INIT = {
    CentroidInit.LINEAR: clustering.CentroidInitialization.LINEAR,
    CentroidInit.RANDOM: clustering.CentroidInitialization.RANDOM,
    CentroidInit.DENSITY_BASED: clustering.CentroidInitialization.DENSITY_BASED,
    CentroidInit.KMEANS_PLUS_PLUS: clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
}


def apply(model: tf_keras.Model, ds: Dataset, step: ClusterStep, variant: Variant, *,
          report: BatchReport | None = None, where: str = "cluster") -> tf_keras.Model:
    """A clustered copy of ``model``, stripped of tfmot wrappers."""
    base = clone(model)
    names = select(base, step.layers, f"{where}.layers")
    params = {
        "number_of_clusters": step.number_of_clusters,
        "cluster_centroids_init": INIT[step.cluster_centroids_init],
    }
    if variant == Variant.SPARSITY_PRESERVING_CLUSTER:
        params["preserve_sparsity"] = True

    def wrap(layer):
        return clustering.cluster_weights(layer, **params) if layer.name in names else layer

    wrapped = tf_keras.models.clone_model(base, clone_function=wrap)
    fit(wrapped, ds, epochs=step.epochs, batch_size=step.batch_size, learning_rate=step.learning_rate,
        report=report, from_logits=not outputs_probabilities(base))
    return clustering.strip_clustering(wrapped)
