"""engine.fastcluster: the fast assignment is tfmot's argmin exactly, fine-tuning through it gives
tfmot's weights, and fast_clustering() always puts tfmot's own methods back."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tensorflow_model_optimization.python.core.clustering.keras import clustering_algorithm
from tensorflow_model_optimization.python.core.clustering.keras.cluster_config import GradientAggregation

from compression.engine import fastcluster

Algorithm = clustering_algorithm.ClusteringAlgorithm
ORIGINAL = {name: Algorithm.__dict__[name] for name in fastcluster.FAST_METHODS}
SHAPES = [(120, 40), (3, 3, 8, 16)]  # a Dense kernel, a Conv2D kernel


@pytest.fixture(autouse=True)
def search_every_size(monkeypatch):
    """Small kernels normally take tfmot's argmin (cheaper than the XLA calls); the tests' kernels
    are small, so let every size take the search, the lookup and the XLA gradient."""
    monkeypatch.setattr(fastcluster, "SMALL", 0)


def tfmot_indices(weight, centroids):
    """tfmot's own get_pulling_indices, called as its wrapper calls it."""
    algorithm = Algorithm(tf.Variable(centroids))
    return ORIGINAL["get_pulling_indices"](algorithm, tf.constant(weight)).numpy()


def fast_indices(weight, centroids):
    return fastcluster.nearest_centroid_indices(tf.constant(weight), tf.constant(centroids)).numpy()


def flags(weight, centroids):
    """Which paths nearest_centroid_indices takes: crowded (binary search), close (refine among
    five values), hopeless (argmin itself)."""
    reach = tf.reduce_max(tf.abs(weight))
    *_, crowded, close, hopeless = fastcluster._prepare_xla(tf.constant(centroids), reach)
    return {"crowded": bool(crowded), "close": bool(close), "hopeless": bool(hopeless)}


def with_far_centroids(c, k=16):
    """``c`` followed by centroids far outside the weights' range, to k in all (each k compiles its
    own XLA kernels once per process, so most tests share k = 16)."""
    return np.concatenate([c, np.linspace(10, 20, k - len(c))]).astype(np.float32)


def hard_kernel(shape, k, seed):
    """Random weights with zeros, weights equal to centroids, weights outside the centroids' range,
    and centroids with duplicates, a zero and -0.0."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.05, shape).astype(np.float32)
    c = rng.normal(0, 0.05, k).astype(np.float32)
    if k > 2:
        c[1] = c[0]  # duplicate: argmin keeps the lower index
        c[k // 2] = c[-1]
        c[2] = 0.0
    flat = w.reshape(-1)
    flat[::7] = 0.0
    flat[1::11] = -0.0
    flat[2::13] = rng.choice(c, flat[2::13].size)
    flat[3::17] *= 20
    return w, c


def midpoint_kernel(shape, k, seed):
    """Centroids on a grid of 2**-6 and weights on a grid of 2**-8: many weights sit exactly on a
    midpoint between two centroids, where argmin's lowest index must win."""
    rng = np.random.default_rng(seed)
    c = (rng.integers(-12, 13, k) / 64).astype(np.float32)
    w = (rng.integers(-60, 61, shape) / 256).astype(np.float32)
    return w, c


@pytest.mark.parametrize("k", [2, 16, 64, 256])
def test_assignment_is_tfmots_argmin_on_random_kernels(k):
    checked_ties = 0
    for seed, shape in enumerate(SHAPES):
        for make in (hard_kernel, midpoint_kernel):
            w, c = make(shape, k, seed)
            expected = tfmot_indices(w, c)
            np.testing.assert_array_equal(fast_indices(w, c), expected)
            d = np.abs(w[..., None] - c)
            checked_ties += int(((d == d.min(-1, keepdims=True)).sum(-1) > 1).sum())
    assert checked_ties > 0  # the kernels did hold ties between distinct indices


def test_equal_distances_go_to_the_lowest_index_as_in_argmin():
    c = with_far_centroids([0.5, -0.5, 0.25, -0.25, 0.25])
    w = np.array([0.0, 0.375, -0.375, 0.25, 1.0, -1.0], np.float32)
    # 0.0 is as near to 0.25 (index 2, and its duplicate 4) as to -0.25 (index 3)
    np.testing.assert_array_equal(fast_indices(w, c), tfmot_indices(w, c))
    np.testing.assert_array_equal(fast_indices(w, c), [2, 0, 1, 2, 0, 1])


def test_a_tie_region_of_many_floats_around_zero():
    """|w + a| and |a - w| round to the same float for every tiny w, so argmin's tie rule decides
    for millions of floats around zero; the threshold search must find the end of that region."""
    c = with_far_centroids([0.01, -0.01, 0.3])
    w = np.array([0.0, 1e-12, -1e-12, 3e-10, -3e-10, 1e-9, -1e-9, 2e-9, -2e-9, 1e-3, -1e-3], np.float32)
    np.testing.assert_array_equal(fast_indices(w, c), tfmot_indices(w, c))
    assert len(set(fast_indices(w, c))) == 2


def test_crowded_buckets_use_the_binary_search_and_stay_exact():
    rng = np.random.default_rng(3)
    # five centroids within 1e-4 of each other among others spread over [-1, 1]
    c = np.concatenate([rng.uniform(-1, 1, 11), 0.2 + np.array([0, 2, 4, 6, 8]) * 1e-5]).astype(np.float32)
    w = np.concatenate([rng.uniform(-1.2, 1.2, 2000), rng.uniform(0.19999, 0.20009, 2000)]).astype(np.float32)
    assert flags(w, c) == {"crowded": True, "close": False, "hopeless": False}
    np.testing.assert_array_equal(fast_indices(w, c), tfmot_indices(w, c))


def far_ties(w, c, result):
    """Weights whose argmin index is not a nearest centroid in exact arithmetic: float rounding
    made a farther centroid with a lower index tie."""
    exact = np.abs(w.astype(np.float64)[:, None] - c.astype(np.float64))
    return int((exact[np.arange(len(w)), result] > exact.min(axis=1)).sum())


def test_nearly_equal_centroids_are_refined_among_five_values():
    """Two centroids closer than the rounding of |w - c|: for weights far from them, both distances
    round to the same float and argmin takes the lower index, even if it is the farther one."""
    c = with_far_centroids([0.5, 0.5 + 2**-24, -0.5, 0.0, 0.25, 0.5 - 2**-10])
    w = np.linspace(-4, 4, 4001).astype(np.float32)
    assert flags(w, c) == {"crowded": False, "close": True, "hopeless": False}
    expected = tfmot_indices(w, c)
    assert far_ties(w, c, expected) > 100
    np.testing.assert_array_equal(fast_indices(w, c), expected)


def test_three_nearly_equal_centroids_fall_back_to_argmin():
    c = with_far_centroids([0.5, 0.5 + 2**-24, 0.5 + 2**-23, -0.5])
    w = np.linspace(-4, 4, 4001).astype(np.float32)
    assert flags(w, c)["hopeless"]
    expected = tfmot_indices(w, c)
    assert far_ties(w, c, expected) > 100
    np.testing.assert_array_equal(fast_indices(w, c), expected)


def test_a_float_falls_in_the_same_bucket_in_tensorflow_and_in_xla():
    """Weights are bucketed by TensorFlow's kernels, thresholds by XLA: exactness needs the same
    bucket for the same float, also at bucket edges and outside the range."""
    rng = np.random.default_rng(7)
    lo, scale, buckets = np.float32(-0.1370), np.float32(1024 / 0.2913), 1024
    edges = lo + np.arange(-2, buckets + 3, dtype=np.float32) / scale
    x = np.concatenate([rng.uniform(-0.3, 0.3, 200_000), edges, np.nextafter(edges, np.float32(1)),
                        np.nextafter(edges, np.float32(-1)), [0.0, -0.0, 1e30, -1e30, 1e-40]]).astype(np.float32)
    in_tf = fastcluster._bucket(tf.constant(x), lo, scale, buckets).numpy()
    in_xla = tf.function(lambda v: fastcluster._bucket(v, lo, scale, buckets), jit_compile=True)(tf.constant(x)).numpy()
    np.testing.assert_array_equal(in_tf, in_xla)
    assert in_tf.min() == 0 and in_tf.max() == buckets - 1 and (np.diff(in_tf[np.argsort(x, kind="stable")]) >= 0).all()


def test_inside_a_graph_and_with_a_variable():
    w, c = hard_kernel((64, 32), 16, seed=5)
    weight, centroids = tf.Variable(w), tf.Variable(c)
    graph = tf.function(lambda: fastcluster.nearest_centroid_indices(weight, centroids))
    np.testing.assert_array_equal(graph().numpy(), tfmot_indices(w, c))
    centroids.assign(c[::-1].copy())  # the traced graph follows the variables
    np.testing.assert_array_equal(graph().numpy(), tfmot_indices(w, c[::-1].copy()))


# --- fine-tuning through the fast path ----------------------------------------------------------


def fine_tune(fast: bool, preserve_sparsity: bool, aggregation="SUM", steps=6):
    """A model with one clustered Dense layer, fine-tuned by Keras fit; returns its state."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.3, (24, 16)).astype(np.float32)
    if preserve_sparsity:
        kernel[rng.random(kernel.shape) < 0.5] = 0.0
    x = rng.normal(size=(steps * 16, 24)).astype(np.float32)
    y = rng.integers(0, 16, steps * 16)
    clustering = tfmot.clustering.keras
    with fastcluster.fast_clustering() if fast else contextlib.nullcontext():
        dense = tf_keras.layers.Dense(16, name="dense")
        dense.build((None, 24))
        dense.set_weights([kernel, np.zeros(16, np.float32)])
        inputs = tf_keras.Input((24,))
        layer = clustering.cluster_weights(dense, number_of_clusters=16,
                                           cluster_centroids_init=clustering.CentroidInitialization.LINEAR,
                                           preserve_sparsity=preserve_sparsity,
                                           cluster_gradient_aggregation=getattr(GradientAggregation, aggregation))
        model = tf_keras.Model(inputs, layer(inputs))
        start = model.layers[-1].pulling_indices["kernel"].numpy().copy()
        model.compile(tf_keras.optimizers.Adam(0.02),
                      tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    wrapper = model.layers[-1]
    return {"start": start,
            "indices": wrapper.pulling_indices["kernel"].numpy(),
            "centroids": wrapper.cluster_centroids["kernel"].numpy(),
            "weights": wrapper.original_clusterable_weights["kernel"].numpy(),
            "bias": wrapper.layer.bias.numpy(),
            "stripped": tfmot.clustering.keras.strip_clustering(model).layers[-1].kernel.numpy()}


@pytest.mark.parametrize("preserve_sparsity, aggregation",
                         [(False, "SUM"), (True, "SUM"), (False, "AVG")])
def test_fine_tuning_gives_tfmots_weights(preserve_sparsity, aggregation):
    theirs = fine_tune(False, preserve_sparsity, aggregation)
    ours = fine_tune(True, preserve_sparsity, aggregation)
    assert (theirs["indices"] != theirs["start"]).any()  # weights changed cluster while training
    np.testing.assert_array_equal(ours["indices"], theirs["indices"])
    for key in ("centroids", "weights", "bias", "stripped"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert not np.allclose(theirs["centroids"], np.linspace(theirs["centroids"].min(), theirs["centroids"].max(), 16))
    if preserve_sparsity:
        assert (ours["stripped"] == 0).sum() >= (theirs["stripped"] == 0).sum() > 0


def test_pcqat_fine_tuning_gives_tfmots_weights():
    """Prune-preserving cluster-preserving QAT calls the same two methods from its quantizer."""
    rng = np.random.default_rng(1)
    values = np.concatenate([np.linspace(-0.5, -0.05, 8), np.linspace(0.05, 0.5, 7), [0.0]]).astype(np.float32)
    kernel = rng.choice(values, (24, 16))
    kernel[:, ::3] = 0.0
    assert len(np.unique(kernel)) == 16  # PCQAT takes the kernel's distinct values as its centroids
    x = rng.normal(size=(48, 24)).astype(np.float32)
    y = rng.integers(0, 16, 48)

    def run(fast):
        quantize = tfmot.quantization.keras
        with fastcluster.fast_clustering() if fast else contextlib.nullcontext():
            inputs = tf_keras.Input((24,))
            model = tf_keras.Model(inputs, tf_keras.layers.Dense(16, name="dense")(inputs))
            model.layers[-1].set_weights([kernel, np.zeros(16, np.float32)])
            scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)
            with quantize.quantize_scope():
                qat = quantize.quantize_apply(quantize.quantize_annotate_model(model), scheme)
            qat.compile(tf_keras.optimizers.Adam(0.02), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            qat.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return [(w.name, w.numpy()) for w in qat.weights]

    theirs, ours = run(False), run(True)
    assert len(ours) == len(theirs)
    centroids = [value for name, value in theirs if "cluster_centroids" in name]
    assert len(centroids) == 1 and not np.isin(centroids[0], kernel).all()  # the centroids trained
    for (name, mine), (_, reference) in zip(ours, theirs):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6, err_msg=name)


# --- the swap -----------------------------------------------------------------------------------


def current():
    return {name: Algorithm.__dict__[name] for name in fastcluster.FAST_METHODS}


def test_the_swap_is_undone_on_exit_and_on_an_exception():
    assert current() == ORIGINAL and not fastcluster.is_active()
    with fastcluster.fast_clustering():
        assert current() == fastcluster.FAST_METHODS and fastcluster.is_active()
        with fastcluster.fast_clustering():  # nested: still fast after the inner block
            pass
        assert current() == fastcluster.FAST_METHODS
    assert current() == ORIGINAL and not fastcluster.is_active()
    with pytest.raises(RuntimeError, match="inside"):
        with fastcluster.fast_clustering():
            raise RuntimeError("inside")
    assert current() == ORIGINAL and not fastcluster.is_active()


def test_the_swap_reaches_the_clustering_wrapper():
    """cluster_weights' wrapper calls the swapped methods while the block is open, and only then."""
    calls = []
    real = fastcluster.FAST_METHODS["get_pulling_indices"]

    def counting(self, weight, centroids=None):
        calls.append(weight.shape)
        return real(self, weight, centroids)

    layer = tf_keras.layers.Dense(4)
    layer.build((None, 8))
    clustering = tfmot.clustering.keras
    original = dict(fastcluster.FAST_METHODS)
    fastcluster.FAST_METHODS["get_pulling_indices"] = counting
    try:
        with fastcluster.fast_clustering():
            wrapped = clustering.cluster_weights(layer, number_of_clusters=16)
            wrapped(tf.zeros((1, 8)))
        assert calls
        seen = len(calls)
        wrapped(tf.zeros((1, 8)))  # after the block: tfmot's own method again
        assert len(calls) == seen
    finally:
        fastcluster.FAST_METHODS.clear()
        fastcluster.FAST_METHODS.update(original)


# --- the project's cluster method, switched on from outside -------------------------------------


def test_the_cluster_method_under_the_switch_gives_the_same_model(tiny_npz, monkeypatch):
    """The cluster executor, run as the pipeline runs every step (inside fast_clustering()): the same
    clustered kernels (to float tolerance) as with tfmot's own methods."""
    from compression.engine import methods as executors
    from compression.engine import models
    from compression.engine.methods.base import MethodContext
    from compression.inputs import data
    from compression.recipe import methods

    ds = data.load_npz(tiny_npz)
    baseline = models.build("lenet_300_100", ds.input_shape, ds.num_classes, 0)
    method = executors.get("cluster")
    step = methods.step_type("cluster").from_dict(
        {"method": "cluster", "number_of_clusters": 16, "cluster_centroids_init": "linear", "epochs": 1,
         "batch_size": 100, "learning_rate": 1e-3}, "steps[0]")
    ctx = MethodContext(baseline=baseline, initial_weights=None, earlier=[], variant="cluster", where="steps[0]")

    def kernels(fast):
        tf_keras.utils.set_random_seed(0)  # the same shuffling for both runs
        with fastcluster.fast_clustering() if fast else contextlib.nullcontext():
            result = method.apply(baseline, ds, step, ctx)
        return [layer.get_weights()[0] for layer in result.model.layers if layer.get_weights()]

    calls = []
    real = fastcluster.assign
    monkeypatch.setattr(fastcluster, "assign", lambda *a: calls.append(1) or real(*a))
    theirs, ours = kernels(False), kernels(True)
    assert calls  # the fast path ran
    for mine, reference in zip(ours, theirs):
        assert len(np.unique(mine)) <= 16
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
