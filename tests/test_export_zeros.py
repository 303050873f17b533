"""Negative zeros left by clustering are exported as zeros, so the container sees the sparsity."""

import numpy as np

import compression  # noqa: F401

from compression import dc
from compression.recipe.choices import ExportMode


def test_negative_zeros_export_as_zeros_and_the_container_codes_them_sparse():
    from compression.engine import models
    from compression.engine.export import to_tflite

    model = models.build("lenet_300_100", (8, 8), 10, seed=0)
    layer = model.get_layer("fc2")
    kernel, bias = layer.get_weights()
    rng = np.random.default_rng(0)
    pruned = rng.random(kernel.shape) < 0.9
    centroids = np.linspace(-0.2, 0.2, 16).astype(np.float32)  # clustered weights, as after clustering
    kernel = np.where(pruned, np.float32(-0.0), centroids[rng.integers(0, 16, kernel.shape)]).astype(np.float32)
    layer.set_weights([kernel, bias])
    assert np.signbit(layer.get_weights()[0][pruned]).all()

    tfl = to_tflite(model, ExportMode.FLOAT32)
    after = layer.get_weights()[0]
    np.testing.assert_array_equal(after, kernel)  # same numbers
    assert not np.signbit(after[after == 0]).any()  # but every zero is +0.0
    _, accounting = dc.encode(tfl)
    row = next(r for r in accounting["tensors"] if list(r["shape"]) == [100, 300])
    assert row["encoding"] == "sparse"
    assert abs(row["kept_pct"] - 100 * (1 - pruned.mean())) < 0.5
