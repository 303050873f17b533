"""Quant-Noise and product quantization as Keras 2 layer wrappers, with their numpy halves.

Fan, Stock et al., "Training with Quantization Noise for Extreme Model Compression" (ICLR 2021):
instead of quantizing every weight in every forward pass (QAT, whose straight-through gradients
are biased), quantize a random share ``p`` of weight blocks in each pass; the other weights take
clean gradients. The quantized subset uses the straight-through estimator:
``w + stop_gradient(mask * (q(w) - w))``. Outside training every weight is quantized, so
validation sees the model as it will be exported. The definitions follow fairseq's
``fairseq/modules/quant_noise.py`` (block masks drawn per pass) and
``fairseq/modules/quantization/{scalar,pq}/`` (scalar emulation, k-means over blocks, codeword
gradients averaged over their blocks); the code is our own.

Blocks (recipe/blocks.py): a kernel is viewed as ``rows = kernel.reshape(-1, channels)`` and a
block is ``block_size`` consecutive weights of one column.

* ``ScalarNoise``: q = rounding to a symmetric ``bits`` grid (one scale per output channel or per
  layer). ``p = 1`` is QAT with a straight-through estimator.
* ``ClusterNoise``: q = the nearest of the layer's centroids; the centroids follow the weights
  (Lloyd steps after every epoch, ``CentroidUpdate``).
* ``BlockDrop``: fairseq's proxy noise for iPQ: a share ``p`` of blocks is set to zero and the rest
  scaled by ``1 / (1 - p)`` while training; nothing happens outside training.
* ``PQKernel``: a product-quantized layer: its kernel is rebuilt from a trainable codebook and fixed
  assignments in every pass; a codeword's gradient is the mean over its blocks.

A fixed ``mask`` (pruned weights) multiplies the kernel first in every wrapper, so a pruned weight is
never drawn as noise and never revived. ``strip`` turns a wrapped model back into plain layers whose
kernels are fully quantized.
"""

from __future__ import annotations

import numpy as np

# --- numpy: blocks, grids, centroids, k-means --------------------------------------------------------


def rows_of(kernel: np.ndarray) -> np.ndarray:
    """The kernel as (weights per output channel, channels)."""
    return np.asarray(kernel).reshape(-1, kernel.shape[-1])


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def scales(kernel: np.ndarray, bits: int, per_channel: bool) -> np.ndarray:
    """The symmetric grid's step: max |w| / qmax per output channel (or for the layer); 1 where all zero."""
    absmax = np.abs(rows_of(kernel)).max(axis=0) if per_channel else np.array(np.abs(kernel).max())
    step = absmax.astype(np.float32) / np.float32(qmax(bits))
    return np.where(step > 0, step, np.float32(1.0)).astype(np.float32)


def to_grid(kernel: np.ndarray, bits: int, per_channel: bool) -> np.ndarray:
    """Every weight rounded to the symmetric ``bits`` grid (zero exact, ``2 qmax + 1`` levels)."""
    k = np.asarray(kernel, dtype=np.float32)
    s = scales(k, bits, per_channel)
    q = np.clip(np.round(rows_of(k) / s), -qmax(bits), qmax(bits)) * s
    return q.reshape(k.shape).astype(np.float32)


def snap(kernel: np.ndarray, centroids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Every weight moved to its nearest centroid (pruned weights, where ``mask`` is False, stay zero)."""
    c = np.sort(np.asarray(centroids, dtype=np.float32))
    k = np.asarray(kernel, dtype=np.float32)
    edges = (c[1:] + c[:-1]) / 2
    out = c[np.searchsorted(edges, k)]
    return np.where(mask, out, 0).astype(np.float32) if mask is not None else out.astype(np.float32)


def kmeans_1d(values: np.ndarray, centroids: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Lloyd steps on scalars from ``centroids``; an empty centroid keeps its place."""
    c = np.sort(np.asarray(centroids, dtype=np.float64))
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return c.astype(np.float32)
    for _ in range(iterations):
        index = np.searchsorted((c[1:] + c[:-1]) / 2, v)
        sums = np.bincount(index, weights=v, minlength=c.size)
        counts = np.bincount(index, minlength=c.size)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        if np.allclose(moved, c):
            break
        c = np.sort(moved)
    return c.astype(np.float32)


def initial_centroids(values: np.ndarray, k: int, how: str, rng: np.random.Generator) -> np.ndarray:
    """``k`` starting centroids for scalars: linear (evenly from min to max), random (uniform in the range),
    density_based (evenly over the cumulative distribution) or kmeans_plus_plus."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    lo, hi = float(v.min()), float(v.max())
    if how == "linear":
        return np.linspace(lo, hi, k).astype(np.float32)
    if how == "random":
        return np.sort(rng.uniform(lo, hi, k)).astype(np.float32)
    if how == "density_based":
        return np.quantile(v, np.linspace(0, 1, k)).astype(np.float32)
    sample = v if v.size <= 20000 else rng.choice(v, 20000, replace=False)
    chosen = [float(rng.choice(sample))]
    dist = (sample - chosen[0]) ** 2
    for _ in range(1, k):
        total = dist.sum()
        pick = float(rng.choice(sample, p=dist / total)) if total > 0 else float(rng.choice(sample))
        chosen.append(pick)
        dist = np.minimum(dist, (sample - pick) ** 2)
    return np.sort(np.asarray(chosen)).astype(np.float32)


def blocks_of(kernel: np.ndarray, block: int) -> np.ndarray:
    """(n_blocks * channels, block) sub-vectors, block-major: row ``j * channels + o`` is block j of channel o."""
    r = rows_of(kernel)
    n, out = r.shape
    return r.reshape(n // block, block, out).transpose(0, 2, 1).reshape(-1, block)


def from_blocks(sub: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of ``blocks_of``."""
    out = shape[-1]
    block = sub.shape[1]
    n = int(np.prod(shape[:-1]))
    return np.asarray(sub).reshape(n // block, out, block).transpose(0, 2, 1).reshape(shape)


def kmeans_blocks(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator,
                  eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(codebook (k, block), assignments) of sub-vectors ``x`` by k-means: k random blocks to start, exact
    E and M steps; an empty codeword takes half of the most populated one (fairseq's em.py)."""
    x = np.asarray(x, dtype=np.float32)
    c = x[rng.choice(len(x), size=k, replace=False)].copy()
    x_sq = (x * x).sum(axis=1, keepdims=True)
    assign = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        assign = _nearest(x, x_sq, c)
        counts = np.bincount(assign, minlength=k)
        for _try in range(100):
            empty = np.flatnonzero(counts == 0)
            if not empty.size:
                break
            big = int(np.argmax(counts))
            e = rng.standard_normal(c.shape[1]).astype(np.float32) * eps
            c[empty[0]] = c[big] + e
            c[big] -= e
            assign = _nearest(x, x_sq, c)
            counts = np.bincount(assign, minlength=k)
        sums = np.zeros_like(c, dtype=np.float64)
        np.add.at(sums, assign, x)
        c = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c).astype(np.float32)
    return c, _nearest(x, x_sq, c)


def _nearest(x: np.ndarray, x_sq: np.ndarray, c: np.ndarray, chunk: int = 65536) -> np.ndarray:
    c_sq = (c * c).sum(axis=1)
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        d = x_sq[start:start + chunk] - 2 * part @ c.T + c_sq
        out[start:start + chunk] = np.argmin(d, axis=1)
    return out


# --- Keras 2 wrappers -------------------------------------------------------------------------------


def wrappers():
    """The wrapper classes (built on first use: TensorFlow loads here)."""
    global _WRAPPERS
    if _WRAPPERS is None:
        _WRAPPERS = _build_wrappers()
    return _WRAPPERS


_WRAPPERS = None


def _build_wrappers():
    import tensorflow as tf
    import tf_keras
    from tf_keras.src.utils import control_flow_util

    class KernelWrapper(tf_keras.layers.Wrapper):
        """Runs the wrapped layer with a kernel computed from its own (``_kernel``): Dense, Conv*D."""

        def __init__(self, layer, mask=None, **kwargs):
            super().__init__(layer, **kwargs)
            self._mask_init = None if mask is None else np.asarray(mask, dtype=np.float32)

        def build(self, input_shape):
            if not self.layer.built:
                self.layer.build(input_shape)
            # kept past Keras' attribute tracking: the variable stays the wrapped layer's own (a PQKernel freezes it)
            object.__setattr__(self, "kernel_var", self.layer.kernel)
            self.mask = None
            if self._mask_init is not None:
                self.mask = self.add_weight("mask", shape=self._mask_init.shape, trainable=False,
                                            initializer=tf_keras.initializers.Constant(self._mask_init))
            self.built = True

        def masked(self):
            return self.kernel_var if self.mask is None else self.kernel_var * self.mask

        def _kernel(self, training):  # pragma: no cover
            raise NotImplementedError

        def call(self, inputs, training=None):
            if training is None:
                training = tf_keras.backend.learning_phase()
            kernel = self._kernel(training)
            # swapped past Keras' attribute tracking: the variable must not be tracked again on the way back
            object.__setattr__(self.layer, "kernel", kernel)
            try:
                return self.layer.call(inputs)
            finally:
                object.__setattr__(self.layer, "kernel", self.kernel_var)

        def compute_output_shape(self, input_shape):
            return self.layer.compute_output_shape(input_shape)

        def block_mask(self, p: float, block: int, training, outside: float = 1.0):
            """1 where a block is drawn (probability p) in a training pass; ``outside`` everywhere outside training."""
            shape = self.kernel_var.shape
            n, out = int(np.prod(shape[:-1])), int(shape[-1])

            def drawn():
                m = tf.cast(tf.random.uniform((n // block, out)) < p, tf.float32)
                return tf.reshape(tf.repeat(m, block, axis=0), shape)

            return control_flow_util.smart_cond(training, drawn, lambda: tf.fill(shape, outside))

    def grid(w, bits: int, per_channel: bool):
        top = float(qmax(bits))
        rows = tf.reshape(w, (-1, w.shape[-1]))
        absmax = tf.reduce_max(tf.abs(rows), axis=0) if per_channel else tf.reduce_max(tf.abs(rows))
        step = absmax / top
        step = tf.where(step > 0, step, tf.ones_like(step))
        q = tf.clip_by_value(tf.round(rows / step), -top, top) * step
        return tf.reshape(q, tf.shape(w))

    class ScalarNoise(KernelWrapper):
        """Quant-Noise for integer weights: a share p of blocks on the ``bits`` grid in each pass."""

        def __init__(self, layer, p: float, block: int, bits: int, per_channel: bool, mask=None, **kwargs):
            super().__init__(layer, mask, **kwargs)
            self.p, self.block, self.bits, self.per_channel = float(p), int(block), int(bits), bool(per_channel)

        def _kernel(self, training):
            w = self.masked()
            q = grid(w, self.bits, self.per_channel)
            return w + tf.stop_gradient(self.block_mask(self.p, self.block, training) * (q - w))

    class ClusterNoise(KernelWrapper):
        """Quant-Noise for clustering: a share p of blocks snapped to their nearest centroid in each pass."""

        def __init__(self, layer, p: float, block: int, centroids, mask=None, **kwargs):
            super().__init__(layer, mask, **kwargs)
            self.p, self.block = float(p), int(block)
            self._centroids_init = np.sort(np.asarray(centroids, dtype=np.float32))

        def build(self, input_shape):
            super().build(input_shape)
            self.centroids = self.add_weight("centroids", shape=self._centroids_init.shape, trainable=False,
                                             initializer=tf_keras.initializers.Constant(self._centroids_init))

        def _kernel(self, training):
            w = self.masked()
            c = self.centroids
            index = tf.searchsorted((c[1:] + c[:-1]) / 2, tf.reshape(w, (-1,)))
            q = tf.reshape(tf.gather(c, index), tf.shape(w))
            if self.mask is not None:
                q = q * self.mask
            return w + tf.stop_gradient(self.block_mask(self.p, self.block, training) * (q - w))

    class BlockDrop(KernelWrapper):
        """fairseq's Quant-Noise proxy for iPQ: a share p of blocks dropped, the rest scaled by 1/(1-p)."""

        def __init__(self, layer, p: float, block: int, mask=None, **kwargs):
            super().__init__(layer, mask, **kwargs)
            self.p, self.block = float(p), int(block)

        def _kernel(self, training):
            w = self.masked()
            keep = 1.0 - self.block_mask(self.p, self.block, training, outside=0.0)
            scale = control_flow_util.smart_cond(training, lambda: tf.constant(1.0 / (1.0 - self.p)),
                                                 lambda: tf.constant(1.0))
            return w * keep * scale

    class PQKernel(KernelWrapper):
        """A product-quantized layer: kernel = codebook[assignments] laid out as blocks (``from_blocks``)."""

        def __init__(self, layer, codebook, assignments, **kwargs):
            super().__init__(layer, None, **kwargs)
            self._codebook_init = np.asarray(codebook, dtype=np.float32)
            self._assign = np.asarray(assignments, dtype=np.int32)

        def build(self, input_shape):
            super().build(input_shape)
            # the layer's own kernel is replaced by the codebook: it no longer trains
            self.layer._trainable_weights = [w for w in self.layer._trainable_weights if w is not self.kernel_var]
            self.layer._non_trainable_weights.append(self.kernel_var)
            self.codebook = self.add_weight("codebook", shape=self._codebook_init.shape, trainable=True,
                                            initializer=tf_keras.initializers.Constant(self._codebook_init))
            counts = np.bincount(self._assign, minlength=len(self._codebook_init)).astype(np.float32)
            self._counts = tf.constant(np.maximum(counts, 1.0)[:, None])
            self._assign_t = tf.constant(self._assign)

        def _kernel(self, training):
            c = self.codebook
            # forward: the codebook; backward: each codeword's gradient divided by its number of blocks
            c = c / self._counts + tf.stop_gradient(c - c / self._counts)
            sub = tf.gather(c, self._assign_t)
            shape = self.kernel_var.shape
            out, block = int(shape[-1]), int(self._codebook_init.shape[1])
            n = int(np.prod(shape[:-1]))
            k = tf.transpose(tf.reshape(sub, (n // block, out, block)), (0, 2, 1))
            return tf.reshape(k, shape)

    class CentroidUpdate(tf_keras.callbacks.Callback):
        """Moves every ClusterNoise layer's centroids to the mean of their weights after each epoch."""

        def __init__(self, iterations: int = 5):
            super().__init__()
            self.iterations = iterations

        def on_epoch_end(self, epoch, logs=None):
            for layer in self.model.layers:
                if isinstance(layer, ClusterNoise):
                    w = layer.masked().numpy()
                    values = w[w != 0] if layer.mask is not None else w
                    layer.centroids.assign(kmeans_1d(values, layer.centroids.numpy(), self.iterations))

    return {"KernelWrapper": KernelWrapper, "ScalarNoise": ScalarNoise, "ClusterNoise": ClusterNoise,
            "BlockDrop": BlockDrop, "PQKernel": PQKernel, "CentroidUpdate": CentroidUpdate}


def wrap_model(model, wrap_for):
    """A copy of ``model`` (weights included) whose layers ``wrap_for(layer)`` maps to a wrapper
    (or None: left as it is)."""
    import tf_keras

    weights = {layer.name: {_short(w): w.numpy() for w in layer.weights} for layer in model.layers}
    made = {}

    def clone(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        wrapper = wrap_for(layer, fresh)
        if wrapper is not None:
            made[layer.name] = fresh
            return wrapper
        made[layer.name] = fresh
        return fresh

    out = tf_keras.models.clone_model(model, clone_function=clone)
    for name, layer in made.items():
        if weights.get(name):  # by name: a PQKernel moves its layer's kernel among the non-trainable weights
            layer.set_weights([weights[name][_short(w)] for w in layer.weights])
    return out


def strip(model, final_kernel):
    """A plain copy of a wrapped model: every wrapper becomes its layer, with ``final_kernel(wrapper)`` (numpy)
    as its kernel; everything else keeps its weights."""
    import tf_keras

    kw = wrappers()["KernelWrapper"]
    plain = {}

    def unwrap(layer):
        inner = layer.layer if isinstance(layer, kw) else layer
        fresh = inner.__class__.from_config(inner.get_config())
        plain[inner.name] = (fresh, layer)
        return fresh

    out = tf_keras.models.clone_model(model, clone_function=unwrap)
    for fresh, old in plain.values():
        if isinstance(old, kw):
            values = {_short(w): w.numpy() for w in old.layer.weights}
            values[_short(old.kernel_var)] = final_kernel(old)
            fresh.set_weights([values[_short(w)] for w in fresh.weights])
        elif old.weights:
            fresh.set_weights(old.get_weights())
    return out


def _short(weight) -> str:
    """A layer weight's own name ("kernel", "bias"), without the layer's scope."""
    return weight.name.split("/")[-1].split(":")[0]



# --- clustering with Quant-Noise (the cluster step's executor calls this when quant_noise > 0) --------


def cluster_with_noise(model, ds, step, ctx):
    """Weight clustering trained with Quant-Noise: each chosen layer starts from ``number_of_clusters``
    centroids (its initialisation, then k-means), trains inside ``ClusterNoise`` (a share of blocks
    snapped in each pass), its centroids following the weights after every epoch; at the end a last
    k-means and every weight snapped. Pruned weights (exact zeros, in the sparsity-preserving variant)
    are held at zero and kept out of the centroids."""
    from compression.engine.methods.base import StepResult
    from compression.engine.metrics import kernel_of
    from compression.engine.models import clone, fit, outputs_probabilities
    from compression.engine.selection import check_per_layer_maps, kernel_infos, select
    from compression.recipe.blocks import plan_blocks

    base = clone(model)
    chosen = select(base, step.layers, f"{ctx.where}.layers")
    check_per_layer_maps(base, step, ctx.where)
    plan = plan_blocks(kernel_infos(base), chosen, ctx.where, "quant_noise_block_size",
                       lambda _name: step.quant_noise_block_size, set())
    notes = [f"{n}; it is not clustered" for n in plan.notes]
    rng = np.random.default_rng(ctx.seed)
    preserve = ctx.variant == "sparsity_preserving_cluster"
    start, masks = {}, {}
    for layer in base.layers:
        if layer.name not in plan.layers:
            continue
        k = kernel_of(layer).numpy()
        mask = k != 0 if preserve and (k == 0).any() else None
        values = k[mask] if mask is not None else k.reshape(-1)
        n = step.clusters_for(layer.name)
        if values.size < n:
            notes.append(f"{layer.name} skipped: it has fewer weights than {n} clusters")
            continue
        start[layer.name] = kmeans_1d(values, initial_centroids(values, n, str(step.cluster_centroids_init), rng))
        if mask is not None:
            masks[layer.name] = mask
    if not start:
        from compression.errors import RecipeError

        raise RecipeError(f"{ctx.where}.layers", "selects no layer to cluster with Quant-Noise")
    w = wrappers()

    def wrap(layer, fresh):
        if layer.name not in start:
            return None
        return w["ClusterNoise"](fresh, step.quant_noise, plan.layers[layer.name][0], start[layer.name],
                                 masks.get(layer.name), name=f"quant_noise_{layer.name}")

    wrapped = wrap_model(base, wrap)
    fit(wrapped, ds, **step.training(), report=ctx.report, from_logits=not outputs_probabilities(base),
        callbacks=[w["CentroidUpdate"]()])

    def final(wrapper):
        k = wrapper.masked().numpy()
        mask = k != 0 if wrapper.mask is not None else None
        values = k[mask] if mask is not None else k.reshape(-1)
        return snap(k, kmeans_1d(values, wrapper.centroids.numpy()), mask)

    out = strip(wrapped, final)
    per_layer = {}
    for layer in out.layers:
        if layer.name in start:
            k = kernel_of(layer).numpy()
            per_layer[layer.name] = {"target": step.clusters_for(layer.name), "achieved": int(np.unique(k[k != 0]).size)}
    stats = {"number_of_clusters": {
        "target": max(v["target"] for v in per_layer.values()),
        "achieved": max(v["achieved"] for v in per_layer.values()),
        "over_target_by": max(v["achieved"] - v["target"] for v in per_layer.values()), "per_layer": per_layer},
        "quant_noise": {"target": step.quant_noise, "achieved": step.quant_noise}}
    return StepResult(out, notes, stats)


__all__ = ["blocks_of", "cluster_with_noise", "from_blocks", "initial_centroids", "kmeans_1d", "kmeans_blocks", "qmax", "rows_of",
           "scales", "snap", "strip", "to_grid", "wrap_model", "wrappers"]
