"""Fast weight clustering for tfmot: exact nearest-centroid assignment without the n x k matrix.

tfmot's ``ClusteringAlgorithm`` finds each weight's centroid with
``argmin(|w[..., None] - centroids|)``: an n x k tensor built, reduced and thrown away at
every training step and every validation batch. Its centroid gradient is the IndexedSlices
of a ``tf.gather`` with n indices, which the tf_keras optimizer deduplicates with ``tf.unique``
over all n indices plus a segment sum, whatever k is. docs/cluster_speed.md has the profile.

``fast_clustering()`` swaps two methods of tfmot's ``ClusteringAlgorithm`` for the duration
of a ``with`` block; graphs traced inside it keep the fast ops afterwards.

``get_pulling_indices`` (``assign``, ``nearest_centroid_indices``), per call:

1. k-sized work (``_prepare_xla``): one sort of the centroids into distinct values, each with
   its lowest original index (the index argmin returns for that value). Between two neighbouring
   values a < b, argmin's choice is monotone in w; the threshold (the smallest float32 w that picks
   b) is found exactly by searching the float32 numbers between a and b (in the order of their
   bit patterns) with argmin's own comparison of ``|w - a|`` and ``|w - b|``, the same float ops,
   so rounding near the midpoint and exact ties (lowest index wins) come out as argmin's. The
   thresholds go into 64 k uniform buckets (at most 2**14) over their range.
2. n-sized work (``_lookup_xla``), one fused pass: the bucket of w (monotone; computed by
   TensorFlow's kernels), three table reads and two comparisons give the number of thresholds
   <= w, one more read the original index, one more the centroid for tfmot's forward value.
   Where a bucket holds more than two thresholds, a branch-free binary search over the
   thresholds (log k reads) runs instead.
3. Two distinct centroids closer than about 2 ulp of max |w - c| (centroids converging on the
   same weights do this for many steps) can make float rounding tie a weight's distance to a
   centroid beyond its two neighbours; argmin then takes the lower index. The choice is then
   refined among the five values around each weight (exact unless three such values lie in a
   row, where argmin itself runs, as it does for non-finite values). The result is argmin's in
   every case.

``get_clustered_weight`` (``clustered_weight``): the same forward value (the gathered centroids
times ``sign(w + 1e6)``, tfmot's straight-through estimator; taken from the pass above when the
wrapper passes back the tensors it just got) with a custom gradient: the original weight gets
the upstream gradient unchanged, as in tfmot; the centroids get the per-cluster sum
(``GradientAggregation.AVG``: mean) of the upstream gradient as one dense k-vector. That is what
the optimizer makes of tfmot's IndexedSlices after deduplication, without the ``tf.unique`` over
n indices (Adam's sparse and dense updates agree once duplicates are summed; the float summation
order differs).

The n-sized parts and the k-sized preparation are small XLA kernels (``jit_compile=True``)
called from Keras' ordinary training step: TensorFlow's own ``searchsorted``, ``gather`` and
``unsorted_segment_sum`` CPU kernels are several times slower at these sizes. Layers with
n * k <= ``SMALL`` keep tfmot's argmin, cheaper there than the XLA calls.

Everything else stays tfmot's: the wrappers, centroid initialisation, sparsity preservation
(zero centroid and mask), the pulling-indices variables, stripping, and the CQAT/PCQAT
quantizer, which calls the same two methods (and per-channel clustering, whose per-channel
search calls the base method).
"""

from __future__ import annotations

import contextlib
import threading

import tensorflow as tf

# uniform buckets over the thresholds' range, per centroid: at 32 no bucket held two thresholds
# for any of tfmot's four initialisations on LeNet-300-100 at 16, 64 or 256 clusters; training
# moves centroids together, and a bucket may hold two before the binary search takes over
BUCKETS_PER_CENTROID = 64
MAX_BUCKETS = 2**14
MAX_CLUSTERS = 2**14  # more centroids: argmin (tfmot's CQAT keeps at most 1024)
SMALL = 2**15  # n * k at or below which tfmot's own argmin (and TF's gather) is cheaper than XLA calls
_INT_MIN = -(2**31)
_RADIX = 64  # keys tested at once per round of the threshold search
_BRACKET = 2**10  # keys either side of the midpoint searched first (2 rounds)


# --- assignment ----------------------------------------------------------------------------------


def _float_key(x):
    """float32 -> int64, monotone (-0.0 and 0.0 share 0): consecutive floats have consecutive keys."""
    i = tf.bitcast(x, tf.int32)
    return tf.cast(tf.where(i >= 0, i, _INT_MIN - i), tf.int64)


def _key_float(key):
    i = tf.cast(key, tf.int32)
    return tf.bitcast(tf.where(i >= 0, i, _INT_MIN - i), tf.float32)


def _groups(c):
    """Distinct centroid values ascending, each with its lowest original index; padded to k (the
    padding is the dtype's max); and G, the number of distinct values."""
    k = c.shape[0]
    span = 1 << (k - 1).bit_length()  # > every index
    # one sort of unique int64 keys: by value, equal values by index
    order = tf.math.floormod(tf.sort(_float_key(c) * span + tf.range(k, dtype=tf.int64)), span)
    s = tf.gather(c, order)
    head = tf.concat([[True], s[1:] != s[:-1]], 0)
    group = tf.cumsum(tf.cast(head, tf.int32)) - 1
    value = tf.math.unsorted_segment_min(s, group, k)
    rep = tf.math.unsorted_segment_min(order, group, k)
    return value, rep, group[-1] + 1


def _thresholds(value, rep, valid):
    """beta[g]: the smallest float32 w for which argmin(|w - c|) picks value g+1 over value g.

    A search over the float32 numbers between the two values, in the order of their int keys,
    testing _RADIX - 1 evenly spaced keys per round. The switch is usually within a few floats
    of the midpoint: two rounds over 2**11 keys around it settle it. When such a bracket does not
    hold it (a tie region of many floats, as for two values either side of zero), six rounds over
    the whole key range (< 2**33) do.
    """
    v_lo, v_hi, r_lo, r_hi = value[:-1], value[1:], rep[:-1], rep[1:]

    def picks_hi(w):  # w: [pairs, probes]; the float ops and tie rule of argmin
        d_lo = tf.abs(w - v_lo[:, None])
        d_hi = tf.abs(w - v_hi[:, None])
        return (d_hi < d_lo) | ((d_hi == d_lo) & (r_hi < r_lo)[:, None])

    lo, hi = _float_key(v_lo), _float_key(v_hi)  # picks_hi is False at lo and True at hi
    mid = _float_key(v_lo + (v_hi - v_lo) * 0.5)
    near_lo = tf.clip_by_value(mid - _BRACKET, lo, hi)
    near_hi = tf.clip_by_value(mid + _BRACKET, lo, hi)
    ends = picks_hi(_key_float(tf.stack([near_lo, near_hi], axis=1)))
    inside = ~ends[:, 0] & ends[:, 1]
    lo, hi = tf.where(inside, near_lo, lo), tf.where(inside, near_hi, hi)
    hi = tf.where(valid, hi, lo + 1)  # padding: nothing to search
    j = tf.range(1, _RADIX, dtype=tf.int64)

    def narrow(lo, hi):  # test _RADIX - 1 evenly spaced keys, keep the last False .. first True
        step = (hi - lo + _RADIX - 1) // _RADIX
        probe = tf.minimum(lo[:, None] + step[:, None] * j[None, :], hi[:, None])
        below = tf.reduce_sum(tf.cast(~picks_hi(_key_float(probe)), tf.int64), axis=1)
        return lo + step * below, tf.minimum(lo + step * (below + 1), hi)

    # 2 rounds for brackets (2 * _BRACKET + 1 <= _RADIX**2 keys), at most 6 for any key range (< 2**33)
    _, hi = tf.while_loop(lambda lo, hi: tf.reduce_any(hi - lo > 1), narrow, [lo, hi], maximum_iterations=6)
    return _key_float(hi)


def _bucket(x, lo, scale, buckets: int):
    """Monotone in x: uniform buckets over the thresholds' range, the outside clipped to the ends.
    Subtract, multiply, clip, truncate (a float >= 0 converts to int by truncation, i.e. floor):
    exact IEEE operations, so TensorFlow's kernels (for the weights) and XLA (for the thresholds)
    give the same bucket for the same float, which a test checks."""
    return tf.cast(tf.clip_by_value((x - lo) * scale, 0.0, buckets - 1.0), tf.int32)


def _buckets(k: int) -> int:
    return min(BUCKETS_PER_CENTROID * k, MAX_BUCKETS)


@tf.function(jit_compile=True, autograph=False)
def _prepare_xla(centroids, reach):
    """The k-sized part: distinct values, thresholds, bucket tables, and three flags.

    ``reach``: max |w|. Flags:

    - ``crowded``: a bucket holds more than two thresholds (the binary search runs);
    - ``close``: two distinct values are so close (gap <= about 2 ulp of the largest |w - c|) that
      float rounding can make a value beyond a weight's two neighbours tie with the nearer one
      (centroids converging on the same weights do this for many steps): ``_refine_xla`` then
      picks among the five values around each weight;
    - ``hopeless``: three such values in a row, or non-finite values: argmin itself runs.

    (A call of its own: in one XLA module with the per-weight pass, XLA fuses the threshold search
    into that pass and repeats it for every weight.)
    """
    c = centroids
    k = c.shape[0]
    value, rep, count = _groups(c)
    valid = tf.range(k - 1) < count - 1
    beta = _thresholds(value, rep, valid)
    reach = reach + tf.reduce_max(tf.abs(c))
    # a far tie needs gap <= ulp(max |w - c|) <= reach * 2**-23; 2**-22 leaves room for the roundings
    tiny = valid & (value[1:] - value[:-1] <= tf.maximum(reach * 2.0**-22, 2.0**-120))
    close = tf.reduce_any(tiny)
    hopeless = tf.reduce_any(tiny[1:] & tiny[:-1]) | ~tf.math.is_finite(reach)
    buckets = _buckets(k)
    lo = beta[0]
    span = tf.gather(beta, tf.maximum(count - 2, 0)) - lo
    scale = tf.where(span > 0, tf.minimum(buckets / span, 1e30), tf.zeros_like(span))
    fb = tf.where(valid, _bucket(beta, lo, scale, buckets), buckets)  # padding past the last bucket
    per_bucket = tf.math.unsorted_segment_sum(tf.cast(valid, tf.int32), fb, buckets + 1)[:buckets]
    crowded = tf.reduce_any(per_bucket > 2)
    base = tf.cumsum(per_bucket, exclusive=True)  # thresholds in lower buckets
    inf = tf.constant(float("inf"), c.dtype)
    beta = tf.concat([tf.where(valid, beta, inf), [inf, inf]], 0)
    # per bucket: the thresholds below it, and its first two (or higher buckets', above all its weights)
    tables = base, tf.gather(beta, base), tf.gather(beta, base + 1)
    picked = tf.gather(c, tf.minimum(rep, k - 1))  # the centroid itself (0.0 and -0.0 are one value)
    return tables, lo, scale, beta, value, rep, picked, count, crowded, close, hopeless


def _group(weight, bucket, tables):
    """The number of thresholds <= w (the two-neighbour choice, as a value number) when no bucket
    holds more than two: thresholds in lower buckets are below w, those in higher buckets above it,
    and the bucket's own are compared."""
    base, first, second = tables
    return (tf.gather(base, bucket) + tf.cast(tf.gather(first, bucket) <= weight, tf.int32)
            + tf.cast(tf.gather(second, bucket) <= weight, tf.int32))


_group_xla = tf.function(_group, jit_compile=True, autograph=False)


@tf.function(jit_compile=True, autograph=False)
def _lookup_xla(weight, bucket, tables, rep, centroids):
    """The usual path: (original index, clustered value) per weight, four table reads for the index
    in one fused pass (the bucket comes from TensorFlow's kernels: computed inside, XLA would
    repeat it for every table read), one more for the value."""
    indices = tf.gather(rep, _group(weight, bucket, tables))
    return indices, _ste(centroids, indices, weight)


@tf.function(jit_compile=True, autograph=False)
def _bisect_xla(weight, beta):
    """The number of thresholds <= w by a branch-free binary search (any spacing of thresholds)."""
    m = beta.shape[0]
    size = 1 << (m - 1).bit_length()  # >= m; beta ends with +inf
    beta = tf.concat([beta, tf.fill([size - m], tf.constant(float("inf"), beta.dtype))], 0)
    pos = tf.zeros(tf.shape(weight), tf.int32)
    step = size // 2
    while step >= 1:
        pos = pos + tf.where(tf.gather(beta, pos + (step - 1)) <= weight, step, 0)
        step //= 2
    return pos


@tf.function(jit_compile=True, autograph=False)
def _refine_xla(weight, group, value, rep, count):
    """argmin among the five distinct values around each weight's two-neighbour choice ``group``:
    exact when no three values lie within rounding of each other (then any tie a rounding makes
    stays within two neighbouring values on each side of w). Returns the original index."""
    best_d = best_r = None
    for offset in (-2, -1, 0, 1, 2):
        j = tf.clip_by_value(group + offset, 0, count - 1)  # count: distinct values
        d = tf.abs(weight - tf.gather(value, j))  # argmin's float op
        r = tf.gather(rep, j)
        if best_d is None:
            best_d, best_r = d, r
        else:
            better = (d < best_d) | ((d == best_d) & (r < best_r))
            best_d, best_r = tf.where(better, d, best_d), tf.where(better, r, best_r)
    return best_r


@tf.function(jit_compile=True, autograph=False)
def _pick_xla(weight, group, rep, picked):
    """(original index, tfmot's forward value centroid * sign(w + 1e6)) of each weight's value number."""
    return tf.gather(rep, group), tf.gather(picked, group) * tf.sign(weight + 1e6)


def argmin_indices(weight, centroids):
    """tfmot's own computation (ClusteringAlgorithm.get_pulling_indices)."""
    return tf.argmin(tf.abs(tf.expand_dims(weight, axis=-1) - centroids), axis=-1)


def _argmin_fallback(weight, centroids):
    """argmin when the search cannot be exact (a name of its own, so a benchmark can count it)."""
    return argmin_indices(weight, centroids)


def _ste(centroids, indices, weight):
    """tfmot's forward value of a clustered weight: the centroid times sign(w + 1e6)."""
    return tf.gather(centroids, indices) * tf.sign(weight + 1e6)


_gather_ste_xla = tf.function(_ste, jit_compile=True, autograph=False)


def _searchable(weight, centroids) -> bool:
    k = centroids.shape[0] if centroids.shape.rank == 1 else None
    return (weight.dtype == tf.float32 and k is not None and 2 <= k <= MAX_CLUSTERS
            and weight.shape.is_fully_defined() and weight.shape.num_elements() * k > SMALL)


def assign(weight, centroids):
    """(indices, clustered value): ``nearest_centroid_indices`` and tfmot's forward value of the
    clustered weight, ``centroids[indices] * sign(weight + 1e6)``."""
    weight = tf.convert_to_tensor(weight)
    centroids = tf.convert_to_tensor(centroids, dtype=weight.dtype)
    if not _searchable(weight, centroids):
        indices = argmin_indices(weight, centroids)
        return indices, _ste(centroids, indices, weight)
    reach = tf.maximum(tf.reduce_max(weight), -tf.reduce_min(weight))
    tables, lo, scale, beta, value, rep, picked, count, crowded, close, hopeless = _prepare_xla(centroids, reach)

    shape = weight.shape
    flat = tf.reshape(weight, [-1])  # XLA's gathers copy 2-D index arrays into another layout first

    def bucket():
        return _bucket(flat, lo, scale, _buckets(centroids.shape[0]))

    def unflat(indices_value):
        return tuple(tf.reshape(t, shape) for t in indices_value)

    def search():
        def refine():
            group = tf.cond(crowded, lambda: _bisect_xla(flat, beta), lambda: _group_xla(flat, bucket(), tables))
            indices = _refine_xla(flat, group, value, rep, count)
            return unflat((indices, _gather_ste_xla(centroids, indices, flat)))

        def crowd():
            return unflat(_pick_xla(flat, _bisect_xla(flat, beta), rep, picked))

        return tf.cond(close, refine,
                       lambda: tf.cond(crowded, crowd, lambda: unflat(_lookup_xla(flat, bucket(), tables, rep, centroids))))

    def fallback():
        indices = _argmin_fallback(weight, centroids)
        return indices, _ste(centroids, indices, weight)

    return tf.cond(hopeless, fallback, search)


def nearest_centroid_indices(weight, centroids):
    """Index of each weight's nearest centroid, exactly ``argmin(|w[..., None] - centroids|)``
    (ties to the lowest index), without the n x k matrix.

    ``weight``: float32 of any static shape; ``centroids``: shape (k,). Returns int64 of
    ``weight``'s shape. Works eagerly and inside ``tf.function`` (graph mode).
    """
    return assign(weight, centroids)[0]


# --- clustered weight and its gradient -------------------------------------------------------------


@tf.function(jit_compile=True, autograph=False)
def _segment_sum_xla(values, indices, like):
    """Per-cluster sums of flat ``values`` (flat inputs: reshaping inside XLA costs two copies)."""
    return tf.math.unsorted_segment_sum(values, indices, like.shape[0])


def clustered_weight(centroids, indices, original_weight, average: bool = False, value=None):
    """``centroids[indices] * sign(original_weight + 1e6)`` (or ``value``, already computed) with
    tfmot's gradients: straight-through to ``original_weight``, and the per-cluster sum
    (``average``: mean) of the upstream gradient to ``centroids``, as a dense vector."""
    indices = tf.convert_to_tensor(indices)
    large = indices.shape.num_elements() is not None and indices.shape.num_elements() > SMALL

    @tf.custom_gradient
    def forward(c, w):
        def grad(dy):
            k = c.shape[0]
            flat = tf.reshape(tf.cast(indices, tf.int64), [-1])
            dy_flat = tf.reshape(dy, [-1])
            total = (_segment_sum_xla(dy_flat, flat, c) if large
                     else tf.math.unsorted_segment_sum(dy_flat, flat, k))
            if average:  # GradientAggregation.AVG: divided by the cluster sizes
                total = tf.math.divide_no_nan(total, tf.math.bincount(tf.cast(flat, tf.int32), minlength=k,
                                                                      maxlength=k, dtype=dy.dtype))
            return total, dy

        if value is not None:
            return tf.identity(value), grad
        return (_gather_ste_xla if large else _ste)(c, indices, w), grad

    return forward(tf.convert_to_tensor(centroids), tf.convert_to_tensor(original_weight))


# --- the swap ------------------------------------------------------------------------------------


def _fast_get_pulling_indices(self, weight, centroids=None):
    if centroids is not None:  # per-channel clustering: one channel's centroids
        return nearest_centroid_indices(weight, centroids)
    indices, value = assign(weight, self.cluster_centroids)
    # tfmot's wrapper passes these very tensors to get_clustered_weight next: keep the value
    self._fast_assigned = (indices, weight, value)
    return indices


def _fast_get_clustered_weight(self, pulling_indices, original_weight):
    from tensorflow_model_optimization.python.core.clustering.keras.cluster_config import GradientAggregation

    if self.cluster_gradient_aggregation not in (GradientAggregation.SUM, GradientAggregation.AVG):
        raise ValueError(f"self.cluster_gradient_aggregation={self.cluster_gradient_aggregation} not implemented.")
    indices, weight, value = getattr(self, "_fast_assigned", None) or (None, None, None)
    self._fast_assigned = None
    if indices is not pulling_indices or weight is not original_weight:
        value = None  # not the pair just assigned (CQAT passes its indices variable): gather again
    # tf.identity as in tfmot (a MirroredVariable becomes a plain tensor)
    return clustered_weight(self.cluster_centroids, pulling_indices, tf.identity(original_weight),
                            average=self.cluster_gradient_aggregation == GradientAggregation.AVG, value=value)


FAST_METHODS = {"get_pulling_indices": _fast_get_pulling_indices,
                "get_clustered_weight": _fast_get_clustered_weight}

_lock = threading.Lock()
_depth = 0
_saved: dict[str, object] = {}


def _algorithm_class():
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_algorithm

    return clustering_algorithm.ClusteringAlgorithm


@contextlib.contextmanager
def fast_clustering():
    """Inside the block, tfmot's clustering (cluster_weights, CQAT, PCQAT) uses the fast methods.

    Put the wrapping and ``fit`` inside it: the methods are looked up when a graph is traced,
    and traced graphs keep what they got. Re-entrant and thread-safe (a count): tfmot's own
    methods come back when the outermost block exits, also on an exception.
    """
    global _depth
    cls = _algorithm_class()
    with _lock:
        if _depth == 0:
            for name, method in FAST_METHODS.items():
                _saved[name] = cls.__dict__[name]
                setattr(cls, name, method)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for name, method in _saved.items():
                    setattr(cls, name, method)
                _saved.clear()


def is_active() -> bool:
    """True inside ``fast_clustering()``."""
    return _depth > 0
