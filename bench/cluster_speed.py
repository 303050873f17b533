"""Clustering speed: a fine-tuning epoch of LeNet-300-100 under tfmot's clustering and the fast path.

    python bench/cluster_speed.py [--quick] [--json PATH] [--md PATH] [--rounds N] [--batch-size B]

Rows, all timed in one process on the same data, batch size and optimizer (Adam, as the studio's
``engine.models.fit``: training epoch plus its validation pass):

* float: the trained baseline fine-tuned as it is (the 1x of every ratio);
* QAT: tfmot's default 8-bit QAT of the baseline (what any QAT epoch costs before clustering);
* cluster 16 / 64: ``cluster_weights`` on every Dense layer (k-means++ centroids, as the cluster
  method's default), with tfmot's own methods and inside ``fastcluster.fast_clustering()``;
* sparsity-preserving cluster 64: the same on a magnitude-pruned copy (90% per hidden kernel, 74%
  for the output kernel);
* PCQAT 16 / 64: ``Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)`` on the pruned
  model clustered (sparsity-preserving) into 16 / 64 clusters, tfmot's path and the fast path.

Every model is compiled once and warmed up on a few batches (graph tracing, XLA compilation), then
each round times one full epoch of every row in turn, so a change of machine load hits all rows
alike; a row's figure is its fastest round (the median is in the JSON). Wall and CPU seconds
(``time.process_time``, all threads) are both recorded. After the last round, each fast-path
model's assignments are compared with tfmot's argmin on its current weights, and the number of
times the fast path fell back to argmin (rounding-tie guard) or to the binary search (crowded
bucket) is reported.

Full mode: MNIST from /work/shared/data/mnist.npz (``--mnist``), scaled by 1/255, the baseline
trained 2 epochs. ``--quick``: scikit-learn's 8x8 digits, a few hundred samples, one round, one
row of each kind at 64 clusters (a code check, not a measurement). The markdown table is printed; ``--json`` writes the rows and the
machine; ``--md`` writes the table to a file, keeping anything below ``<!-- notes -->`` in it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import compression  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from machine import load, machine  # noqa: E402  (bench/machine.py: this script's folder is on the path)

NOTES_MARK = "<!-- notes -->"
MNIST = Path(os.environ.get("COMPRESSION_DATA_DIR") or ROOT.parent / "shared" / "data") / "mnist.npz"  # as the studio finds it
PRUNE = {"fc1": 0.90, "fc2": 0.90, "output": 0.74}  # fraction of each kernel set to zero
PROFILE_ROWS = ["float", "cluster16_tfmot", "cluster64_tfmot", "cluster64_fast", "pcqat64_tfmot", "pcqat64_fast"]
# quick mode: each kind of row once, at one k (every k compiles its own XLA kernels)
QUICK_ROWS = ["float", "cluster64_tfmot", "cluster64_fast", "spcluster64_fast", "pcqat64_tfmot", "pcqat64_fast"]


@dataclass
class Row:
    key: str
    label: str
    clusters: int | None
    path: str  # "float", "tfmot" or "fast"
    train_steps: int = 0
    val_steps: int = 0
    wall_s: list = field(default_factory=list)  # per timed epoch
    cpu_s: list = field(default_factory=list)
    assignments_equal: bool | None = None  # fast rows: equal to tfmot's argmin on the final weights
    paths: dict | None = None  # fast rows: assignment calls in the timed epochs, and how many took each rarer path

    @property
    def wall(self) -> float:
        return min(self.wall_s)

    @property
    def cpu(self) -> float:
        return min(self.cpu_s)

    def to_dict(self, ref: "Row") -> dict:
        out = asdict(self)
        out.update(wall_s_min=self.wall, cpu_s_min=self.cpu, wall_s_median=statistics.median(self.wall_s),
                   cpu_s_median=statistics.median(self.cpu_s), ms_per_step=1000 * self.wall / self.train_steps,
                   wall_x=self.wall / ref.wall, cpu_x=self.cpu / ref.cpu)
        return out


class EpochTimer:
    """Keras callback: wall and CPU seconds of each epoch (training plus its validation pass)."""

    def __init__(self):
        import tf_keras

        class _Timer(tf_keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                cb.start = time.perf_counter(), time.process_time()

            def on_epoch_end(cb, epoch, logs=None):
                self.wall = time.perf_counter() - cb.start[0]
                self.cpu = time.process_time() - cb.start[1]

        self.callback = _Timer()
        self.wall = self.cpu = None


# --- data and models --------------------------------------------------------------------------


def load_data(quick: bool, mnist: Path):
    import numpy as np

    from compression.inputs import data

    if quick:
        ds = data.load("digits")
        ds.x_train, ds.y_train = ds.x_train[:320], ds.y_train[:320]
        ds.x_val, ds.y_val = ds.x_val[:64], ds.y_val[:64]
        return ds
    with np.load(mnist, allow_pickle=False) as f:
        x_train = f["x_train"].astype(np.float32) / 255.0
        x_test = f["x_test"].astype(np.float32) / 255.0
        return data.make_dataset("mnist", x_train, f["y_train"], x_test, f["y_test"])


def pruned_copy(model):
    """Magnitude pruning, one shot: the smallest PRUNE[name] of each kernel set to zero."""
    import numpy as np

    from compression.engine.models import clone

    out = clone(model)
    for layer in out.layers:
        if layer.name in PRUNE:
            kernel, bias = layer.get_weights()
            cut = np.quantile(np.abs(kernel), PRUNE[layer.name])
            layer.set_weights([np.where(np.abs(kernel) <= cut, 0.0, kernel).astype(kernel.dtype), bias])
    return out


def clustered(model, k: int, preserve_sparsity: bool):
    """Every Dense layer wrapped by tfmot's cluster_weights (k-means++ centroids)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from compression.engine.models import clone

    clustering = tfmot.clustering.keras
    return tf_keras.models.clone_model(
        clone(model), clone_function=lambda layer: clustering.cluster_weights(
            layer, number_of_clusters=k, cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
            preserve_sparsity=preserve_sparsity) if isinstance(layer, tf_keras.layers.Dense) else layer)


def qat(model, preserve: bool):
    """tfmot's 8-bit QAT; ``preserve``: the prune- and cluster-preserving scheme (PCQAT)."""
    import tensorflow_model_optimization as tfmot

    from compression.engine.models import clone

    quantize = tfmot.quantization.keras
    annotated = quantize.quantize_annotate_model(clone(model))
    with quantize.quantize_scope():
        if preserve:
            scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)
            return quantize.quantize_apply(annotated, scheme)
        return quantize.quantize_apply(annotated)


def pruned_clustered(pruned, k: int):
    """The PCQAT input: the pruned model clustered (sparsity-preserving) and stripped."""
    import tensorflow_model_optimization as tfmot

    from compression.engine import fastcluster

    with fastcluster.fast_clustering():  # exact either way; only the wrapping runs here
        return tfmot.clustering.keras.strip_clustering(clustered(pruned, k, preserve_sparsity=True))


# --- counting the fast path's fallbacks ---------------------------------------------------------


class Counters:
    """Wraps fastcluster's module functions (before any graph is traced) so that each assignment
    call (layers with n * k <= fastcluster.SMALL included: they take argmin by design) and each
    run of a rarer path adds 1 to a variable: the binary search (crowded buckets), the refinement
    among five values (nearly equal centroids) and argmin (three of those in a row). The rarer
    paths sit in branches that normally do not run; the usual path gains one increment per call."""

    NAMES = {"calls": "assign", "bisect": "_bisect_xla", "refine": "_refine_xla", "argmin": "_argmin_fallback"}

    def __init__(self):
        import tensorflow as tf

        from compression.engine import fastcluster

        self.variables = {}
        for key, name in self.NAMES.items():
            variable = self.variables[key] = tf.Variable(0, dtype=tf.int64, trainable=False)
            setattr(fastcluster, name, self._counted(variable, getattr(fastcluster, name)))

    @staticmethod
    def _counted(variable, fn):
        import tensorflow as tf

        def wrapper(*args, **kwargs):
            with tf.control_dependencies([variable.assign_add(1)]):
                return tf.nest.map_structure(tf.identity, fn(*args, **kwargs))

        return wrapper

    def read(self) -> dict:
        return {key: int(v.numpy()) for key, v in self.variables.items()}


def assignments_equal(model) -> bool:
    """Each clustering variable's fast assignment equals tfmot's argmin on the model's weights now."""
    import numpy as np
    import tensorflow as tf

    from compression.engine import fastcluster

    pairs = []
    for layer in model.layers:
        for name, centroids in getattr(layer, "cluster_centroids", {}).items():  # cluster_weights wrappers
            weight = layer.original_clusterable_weights[name]
            if layer.preserve_sparsity:
                weight = weight * layer.sparsity_masks[name]
            pairs.append((weight, centroids))
        for weight in getattr(layer, "weights", []):  # PCQAT: the quantizer's own variables
            if "ori_weights_vars_tf" in weight.name:
                centroids = next(w for w in layer.weights if "cluster_centroids_tf" in w.name)
                pairs.append((weight, centroids))
    assert pairs, "no clustered weights found"
    return all(np.array_equal(fastcluster.nearest_centroid_indices(tf.convert_to_tensor(w), tf.convert_to_tensor(c)),
                              fastcluster.argmin_indices(tf.convert_to_tensor(w), tf.convert_to_tensor(c)))
               for w, c in pairs)


# --- profile ------------------------------------------------------------------------------------


def profile(model, ds, batch_size: int, steps: int, top: int = 12) -> list[tuple[str, float]]:
    """(op type or XLA kernel, ms per training step) for ``steps`` steps under TensorFlow's profiler,
    largest first. Op time includes time waiting for a core, so under load it is inflated."""
    import collections
    import glob
    import shutil
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    n = steps * batch_size
    logdir = tempfile.mkdtemp(prefix="cluster_profile_")
    try:
        tf.profiler.experimental.start(logdir)
        model.fit(ds.x_train[:n], ds.y_train[:n], epochs=1, batch_size=batch_size, verbose=0)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb").read())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    total = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name.split("#")[0]
                if name == "CpuExecutable::ExecuteAsyncOnStream":
                    name = "XLA kernels (fast path)"
                elif ":" in name and "::" not in name and " " not in name and "Dataset" not in name:
                    name = name.rsplit(":", 1)[1]  # a TensorFlow op, "scope/op:Type" -> Type
                else:
                    continue  # the framework's own events, and XLA's kernels (inside the line above)
                total[name] += event.duration_ps / 1e9 / steps
    return [(name, round(ms, 3)) for name, ms in total.most_common(top)]


# --- the run ----------------------------------------------------------------------------------


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def versions() -> dict:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    return {"tensorflow": tf.__version__, "tfmot": tfmot.__version__}


def run(args) -> tuple[list[Row], dict]:
    import math

    from compression.engine import fastcluster, models

    counters = Counters()
    ds = load_data(args.quick, args.mnist)
    baseline_epochs = 3 if args.quick else 2
    meta = {"command": "python bench/cluster_speed.py " + shlex.join(sys.argv[1:]), "quick": args.quick,
            "dataset": ds.name, "n_train": len(ds.x_train), "n_val": len(ds.x_val), "batch_size": args.batch_size,
            "rounds": args.rounds, "baseline_epochs": baseline_epochs, **machine(), "load_start": load(),
            **versions()}
    log(f"baseline: lenet_300_100 on {ds.name}, {baseline_epochs} epochs")
    baseline = models.build("lenet_300_100", ds.input_shape, ds.num_classes, 0)
    models.fit(baseline, ds, epochs=baseline_epochs, batch_size=args.batch_size, learning_rate=1e-3)
    pruned = pruned_copy(baseline)

    fast = fastcluster.fast_clustering
    none = contextlib.nullcontext
    # key -> (label, clusters, path, context, make the model inside the context, learning rate)
    specs = {
        "float": ("float fine-tuning", None, "float", none, lambda: models.clone(baseline), 1e-5),
        "qat": ("QAT (tfmot default 8-bit)", None, "float", none, lambda: qat(baseline, False), 1e-4),
    }
    for k in (16, 64):
        for path, ctx in (("tfmot", none), ("fast", fast)):
            specs[f"cluster{k}_{path}"] = (f"cluster {k}", k, path, ctx, lambda k=k: clustered(baseline, k, False), 1e-5)
    for path, ctx in (("tfmot", none), ("fast", fast)):
        specs[f"spcluster64_{path}"] = ("sparsity-preserving cluster 64", 64, path, ctx,
                                        lambda: clustered(pruned, 64, True), 1e-5)
    made = {}  # the PCQAT input per k, made once (when a row needs it) and shared by both paths

    def pcqat_input(k):
        if k not in made:
            made[k] = pruned_clustered(pruned, k)
        return made[k]

    for k in (16, 64):
        for path, ctx in (("tfmot", none), ("fast", fast)):
            specs[f"pcqat{k}_{path}"] = (f"PCQAT {k}", k, path, ctx, lambda k=k: qat(pcqat_input(k), True), 1e-4)
    only = args.only or (QUICK_ROWS if args.quick else None)
    if only:
        specs = {key: spec for key, spec in specs.items() if key in only or key == "float"}

    steps = math.ceil(len(ds.x_train) / args.batch_size)
    val_steps = math.ceil(len(ds.x_val) / args.batch_size)
    warm = min(len(ds.x_train), args.batch_size * (4 if args.quick else 10))
    rows, live = [], {}
    for key, (label, k, path, ctx, make, lr) in specs.items():
        log(f"building and warming up: {key}")
        with ctx():
            model = make()
            # as the methods do: logits or not is the baseline's (a QAT wrapper hides the softmax)
            models.compile_for_training(model, lr, from_logits=not models.outputs_probabilities(baseline),
                                        optimizer=models.make_optimizer(lr))
            model.fit(ds.x_train[:warm], ds.y_train[:warm], validation_data=(ds.x_val[:warm], ds.y_val[:warm]),
                      epochs=1, batch_size=args.batch_size, verbose=0)
        live[key] = (model, ctx)
        rows.append(Row(key, label, k, path, steps, val_steps))
    if args.profile:
        meta["profile_steps"] = args.profile
        meta["profile"] = {}
        for row in rows:
            if row.key in PROFILE_ROWS:
                model, ctx = live[row.key]
                log(f"profiling {row.key}")
                with ctx():
                    meta["profile"][row.key] = profile(model, ds, args.batch_size, args.profile)
    counted = {}
    for r in range(args.rounds):
        for row in rows:
            model, ctx = live[row.key]
            timer = EpochTimer()
            before = counters.read()
            with ctx():  # as the studio's models.fit: shuffled training epoch, then validation
                model.fit(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val), epochs=1,
                          batch_size=args.batch_size, shuffle=True, verbose=0, callbacks=[timer.callback])
            after = counters.read()
            if row.path == "fast":
                total = counted.setdefault(row.key, dict.fromkeys(after, 0))
                for key in after:
                    total[key] += after[key] - before[key]
            row.wall_s.append(round(timer.wall, 3))
            row.cpu_s.append(round(timer.cpu, 3))
            log(f"round {r + 1}/{args.rounds} {row.key:18s} {timer.wall:8.2f} s wall {timer.cpu:8.2f} s CPU")
    for row in rows:
        if row.path == "fast":
            row.paths = counted[row.key]
            row.assignments_equal = assignments_equal(live[row.key][0])
    meta["load_end"] = load()
    return rows, meta


def markdown(rows: list[Row], meta: dict) -> str:
    ref = next(r for r in rows if r.key == "float")
    lines = [
        f"Command: `{meta['command']}`" + (" (quick mode: a code check on 8x8 digits, not a measurement)"
                                           if meta["quick"] else ""),
        "",
        f"Machine: {meta['cpu']}, {meta['cores']} cores, {meta['system']}, Python {meta['python']}, TensorFlow "
        f"{meta['tensorflow']}, tfmot {meta['tfmot']}. Load average at start {meta['load_start']}, at end "
        f"{meta['load_end']} (the cores were shared with other jobs when above 0).",
        "",
        f"LeNet-300-100 on {meta['dataset']}: {meta['n_train']} training samples ({ref.train_steps} steps of "
        f"{meta['batch_size']}) and {meta['n_val']} validation samples per epoch; the fastest of "
        f"{meta['rounds']} rounds per row.",
        "",
        "| row | path | wall s / epoch | CPU s / epoch | ms / step | wall x float | CPU x float "
        "| fast path: calls (binary search / refine / argmin) | assignments = argmin |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        p = r.paths
        fallbacks = f"{p['calls']} ({p['bisect']} / {p['refine']} / {p['argmin']})" if p else ""
        equal = {None: "", True: "yes", False: "NO"}[r.assignments_equal]
        lines.append(f"| {r.label} | {r.path} | {r.wall:.2f} | {r.cpu:.2f} | {1000 * r.wall / r.train_steps:.1f} "
                     f"| {r.wall / ref.wall:.2f} | {r.cpu / ref.cpu:.2f} | {fallbacks} | {equal} |")
    if meta.get("profile"):
        lines += ["", f"Profile ({meta['profile_steps']} training steps per row under TensorFlow's profiler; ms per "
                  "step of each op type, summed over layers; op time includes waiting for a core):", ""]
        for key, ops in meta["profile"].items():
            lines.append(f"- {key}: " + ", ".join(f"{name} {ms:.2f}" for name, ms in ops))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="8x8 digits, few steps, one round: checks the code")
    ap.add_argument("--json", type=Path, default=None, help="write the rows and the machine here")
    ap.add_argument("--md", type=Path, default=None, help="write the table here (keeps notes below <!-- notes -->)")
    ap.add_argument("--mnist", type=Path, default=MNIST, help="MNIST .npz (x_train, y_train, x_test, y_test)")
    ap.add_argument("--rounds", type=int, default=None, help="timed epochs per row (default 2, quick 1)")
    ap.add_argument("--batch-size", type=int, default=None, help="samples per step (default 128, quick 32)")
    ap.add_argument("--only", nargs="*", default=None, help="only these row keys (float is always timed)")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="first profile STEPS training steps of " + ", ".join(PROFILE_ROWS) + " (top op types)")
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.batch_size = args.batch_size or (32 if args.quick else 128)
    rows, meta = run(args)
    text = markdown(rows, meta)
    print(text)
    ref = next(r for r in rows if r.key == "float")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": [r.to_dict(ref) for r in rows]}, indent=2) + "\n",
                             encoding="utf-8")
    if args.md:
        keep = ""
        if args.md.exists() and NOTES_MARK in (old := args.md.read_text(encoding="utf-8")):
            keep = old[old.index(NOTES_MARK):]
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text("# Clustering speed\n\n" + text + ("\n" + keep if keep else ""), encoding="utf-8")
    bad = [r.key for r in rows if r.assignments_equal is False]
    if bad:
        log(f"fast assignments differ from tfmot's argmin in: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
