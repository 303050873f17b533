"""Each method reaches what was asked, touches only the chosen layers, and leaves its input intact."""

import numpy as np
import pytest

from compression import data
from compression.engine import metrics, models
from compression.engine.methods import cluster as clustering, prune as pruning
from compression.choices import Variant
from compression.errors import RecipeError
from compression.recipe import ClusterStep, LayerSelection, Recipe


@pytest.fixture(scope="module")
def ds(tiny_npz):
    return data.load_npz(tiny_npz)


@pytest.fixture(scope="module")
def baseline(ds):
    return models.train_baseline("lenet_300_100", ds, epochs=3, batch_size=32, seed=0)


def kernels(model):
    return {lw.name: lw.kernel for lw in metrics.keras_weights(model)}


def sparsity_of(kernel):
    return 1 - np.count_nonzero(kernel) / kernel.size


def step(cls, **kw):
    """A step as a recipe would parse it."""
    return Recipe.from_dict({"dataset": "digits", "baseline": {"arch": "lenet_300_100"},
                             "steps": [{"method": cls, **kw}]}).steps[0]


@pytest.mark.parametrize("kw, target", [
    ({"initial_sparsity": 0.5, "final_sparsity": 0.8}, 0.8),
    ({"schedule": "constant_sparsity", "target_sparsity": 0.6}, 0.6),
    ({"initial_sparsity": 0.0, "final_sparsity": 0.95, "frequency": 1}, 0.95),
])
def test_pruning_reaches_the_asked_sparsity_in_every_layer(ds, baseline, kw, target):
    before = [w.copy() for w in baseline.get_weights()]
    pruned, _ = pruning.apply(baseline, ds, step("prune", epochs=2, batch_size=32, **kw))
    for name, k in kernels(pruned).items():
        assert sparsity_of(k) == pytest.approx(target, abs=0.01), name
    for a, b in zip(before, baseline.get_weights()):  # the input model is untouched
        np.testing.assert_array_equal(a, b)


def test_short_fine_tuning_still_reaches_the_target_and_says_why(ds, baseline):
    # 270 samples / 32 = 9 steps per epoch: frequency 100 would never update the mask.
    s = step("prune", final_sparsity=0.7, frequency=100, epochs=1, batch_size=32)
    pruned, notes = pruning.apply(baseline, ds, s)
    assert any("frequency lowered" in n for n in notes)
    assert all(sparsity_of(k) == pytest.approx(0.7, abs=0.01) for k in kernels(pruned).values())


def test_m_by_n_pruning_zeroes_m_of_every_n(ds, baseline):
    pruned, _ = pruning.apply(baseline, ds, step("prune", sparsity_m_by_n=[2, 4], epochs=1, batch_size=32))
    k = kernels(pruned)["fc2"]  # (300, 100): blocks of 4 along the input axis
    blocks = (k.T.reshape(k.shape[1], -1, 4) != 0).sum(axis=-1)
    assert blocks.max() <= 2
    assert sparsity_of(k) == pytest.approx(0.5, abs=0.01)


def test_pruning_only_the_chosen_layers(ds, baseline):
    pruned, _ = pruning.apply(baseline, ds, step("prune", final_sparsity=0.8, epochs=1, layers={"names": ["fc2"]}))
    ks = kernels(pruned)
    assert sparsity_of(ks["fc2"]) == pytest.approx(0.8, abs=0.01)
    assert sparsity_of(ks["fc1"]) < 0.05 and sparsity_of(ks["output"]) < 0.05
    pruned, _ = pruning.apply(baseline, ds, step("prune", final_sparsity=0.8, epochs=1, layers="all_but_first_last"))
    ks = kernels(pruned)
    assert sparsity_of(ks["fc2"]) > 0.75 and sparsity_of(ks["fc1"]) < 0.05


def test_an_unknown_layer_name_is_a_clear_error(ds, baseline):
    with pytest.raises(RecipeError, match="no layer with weights named 'fc9'; there are: fc1, fc2, output"):
        pruning.apply(baseline, ds, step("prune", layers={"names": ["fc9"]}))


@pytest.mark.parametrize("init", ["linear", "random", "density_based", "kmeans_plus_plus"])
def test_clustering_leaves_at_most_n_values_per_kernel(ds, baseline, init):
    s = ClusterStep(number_of_clusters=8, cluster_centroids_init=init, epochs=1, batch_size=32)
    clustered = clustering.apply(baseline, ds, s, Variant.CLUSTER)
    for name, k in kernels(clustered).items():
        assert np.unique(k).size <= 8, name
    assert np.unique(kernels(baseline)["fc1"]).size > 1000  # the input is untouched


def test_sparsity_preserving_clustering_keeps_the_zeros(ds, baseline):
    pruned, _ = pruning.apply(baseline, ds, step("prune", final_sparsity=0.8, epochs=1, batch_size=32))
    s = ClusterStep(number_of_clusters=8, epochs=1, batch_size=32)
    kept = clustering.apply(pruned, ds, s, Variant.SPARSITY_PRESERVING_CLUSTER)
    lost = clustering.apply(pruned, ds, s, Variant.CLUSTER)
    for name, k in kernels(kept).items():
        assert sparsity_of(k) == pytest.approx(0.8, abs=0.01), name
        assert np.unique(k).size <= 8
    # Plain clustering moves the zeros to the nearest centroid: that is what preserving prevents.
    assert sparsity_of(kernels(lost)["fc1"]) < 0.5


def test_layer_selection_types(ds, baseline):
    s = ClusterStep(number_of_clusters=4, epochs=1, layers=LayerSelection.parse({"types": ["Dense"]}, "x"))
    clustered = clustering.apply(baseline, ds, s, Variant.CLUSTER)
    assert all(np.unique(k).size <= 4 for k in kernels(clustered).values())
    with pytest.raises(RecipeError, match="no layer of type Conv2D"):
        clustering.apply(baseline, ds, ClusterStep(layers=LayerSelection.parse({"types": ["Conv2D"]}, "x")),
                         Variant.CLUSTER)
