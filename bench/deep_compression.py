"""Deep Compression reproduced and beaten: the two presets against the published rows and the usual peers.

    python bench/deep_compression.py [--quick] [--out docs/benchmarks.md] [--runs DIR] [--seeds 0 1 2] [--jobs 2]

Full mode (MNIST, found through COMPRESSION_DATA_DIR like every run of the studio) runs:

* examples/deep_compression_lenet_300_100.json and examples/deep_compression_lenet_5.json, each with
  seeds 0, 1 and 2 (a preset "dominates" a published row only if its mean over the seeds does);
* the ablations, each changing one ingredient of a preset (seed 0): taking it out where the preset has
  it, putting it in where it does not (distillation, iterative pruning, 64 clusters, the baseline
  recipe; LeNet-5 only the last, PRESET_ABLATIONS); those that change only the compression steps
  start from the seed-0 preset's own baseline;
* from each preset's own baseline (the run folder's baseline.keras): the float32 TFLite file
  (the 1x reference of every ratio in its group) and post-training dynamic int8;
* each preset's final model exported in the other modes (float16 / int8) where the final model
  is not a QAT model, since the Deep Compression container can be smaller from float weights;
* the peers a user would otherwise pick: examples/tfmot_pruning_tutorial.json and
  examples/mnist_prune_cluster_qat.json;
* after the recipes, an epoch of clustering and PCQAT at 16 and 64 clusters against a float epoch
  (bench/cluster_speed.py, the fast path every preset runs on), so the table shows it measured in
  the same run.

Every figure is read from the exported file: test error from running it, its bytes, its
zipped bytes, model.dc's bytes, batch-1 latency. The markdown table goes to ``--out``
with the command and the machine; anything below the line ``<!-- notes -->`` in an existing
``--out`` file is kept (hand-written notes on what was tried).

``--jobs 2`` runs two recipes at once, each in its own process with one TensorFlow thread (models
this small keep one core busier than they keep two).
``--runs DIR`` keeps the run folders; run again with the same folder, a benchmark reuses every run
whose recipe it finished there (``bench_item.json`` beside the run), so a stopped benchmark goes on
where it stopped.

``--quick`` runs the same code on scikit-learn's 8x8 digits (offline) with small epoch
counts, one seed and the first preset's ablations that reuse its baseline; lenet_5_caffe cannot
take 8x8 images, so quick mode substitutes lenet_5 and says so. The frontier (error against
model.dc's ratio, with the published rows) is drawn to a PNG beside --out.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import compression  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from machine import load, machine  # noqa: E402  (bench/machine.py: this script's folder is on the path)

EXAMPLES = ROOT / "examples"
NOTES_MARK = "<!-- notes -->"

# Targets of issue 18: (max test error %, min zipped-TFLite ratio, min model.dc ratio); the presets must
# dominate every published row of their network (compression.studio.published) with their mean.
TARGETS = {"lenet_300_100": (1.58, 40.0, 64.0), "lenet_5_caffe": (0.74, 0.0, 108.0)}
STRETCH = {"lenet_5_caffe": (0.80, 162.0)}
CPU_BUDGET_S = 15 * 60  # a preset run, baseline included
SEEDS = (0, 1, 2)
PRESET = "Deep Compression preset (studio)"


def _set_steps(recipe: dict, method: str, **changes) -> bool:
    hit = False
    for s in recipe["steps"]:
        if s["method"] == method:
            s.update(changes)
            hit = True
    return hit


def _no_distill(r: dict) -> bool:
    hit = any(s.get("distill_alpha") for s in r["steps"])
    for s in r["steps"]:
        s["distill_alpha"] = 0.0
    return hit


def _one_cycle(r: dict) -> bool:
    return any(s.get("cycles", 1) > 1 for s in r["steps"] if s["method"] == "prune") and \
        _set_steps(r, "prune", cycles=1)


def _sixteen(r: dict) -> bool:
    c = next((s for s in r["steps"] if s["method"] == "cluster"), None)
    if c is None:
        return False
    n = c.get("number_of_clusters", 16)
    if (max(n.values()) if isinstance(n, dict) else n) <= 16:
        return False
    c["number_of_clusters"] = 16
    return True


def _old_baseline(r: dict) -> bool:
    b = r["baseline"]
    hit = bool(b.get("augment_shift") or b.get("label_smoothing"))
    b.update(augment_shift=0, label_smoothing=0.0)
    return hit


def _with_distill(r: dict) -> bool:
    if any(s.get("distill_alpha") for s in r["steps"]):
        return False
    for s in r["steps"]:
        s.update(distill_alpha=0.5, distill_temperature=4.0)
    return True


def _with_cycles(r: dict) -> bool:
    prune = [s for s in r["steps"] if s["method"] == "prune"]
    if not prune or any(s.get("cycles", 1) > 1 for s in prune):
        return False
    for s in prune:
        s.update(cycles=3)
        s.pop("end_step", None)  # the cycles share the step: the ramp must not end at the one-ramp end step
    return True


def _sixty_four(r: dict) -> bool:
    c = next((s for s in r["steps"] if s["method"] == "cluster"), None)
    n = None if c is None else c.get("number_of_clusters", 16)
    if c is None or (min(n.values()) if isinstance(n, dict) else n) >= 64:
        return False
    c.update(number_of_clusters=64, batch_size=128)  # the paper's 6 bits for every layer
    return True


# key -> (label, change(recipe) -> whether it applies, whether the preset's own baseline can be reused).
# Each ingredient measured one at a time against the preset: taken out where the preset has it, put in
# where it does not (what was tried and left out).
ABLATIONS = {
    "no_distill": ("without distillation", _no_distill, True),
    "with_distill": ("with distillation from the float baseline (alpha 0.5, T 4) in every step", _with_distill, True),
    "one_cycle": ("without iterative pruning (one gradual ramp)", _one_cycle, True),
    "with_cycles": ("with iterative pruning (3 prune-retrain cycles)", _with_cycles, True),
    "16_clusters": ("16 clusters per layer instead of 64", _sixteen, True),
    "64_clusters": ("64 clusters per layer (the paper's 6 bits)", _sixty_four, True),
    "old_baseline": ("without the baseline recipe (no random shifts, no label smoothing)", _old_baseline, False),
}
QUICK_ABLATIONS = ("no_distill", "with_distill")  # whichever applies: reuses the preset's baseline
# LeNet-5 (Caffe) costs about 3 times LeNet-300-100 a run (19 CPU-minutes with its baseline): its one ablation is
# the ingredient that matters most to it, its baseline recipe; distillation, iterative pruning and 64 clusters are
# measured on LeNet-300-100.
PRESET_ABLATIONS = {"dc_lenet_5": ("old_baseline",)}

GROUP_TITLES = {"lenet_300_100": "LeNet-300-100 on MNIST", "lenet_5_caffe": "LeNet-5 (Caffe) on MNIST",
                "lenet_5": "LeNet-5 (tfmot tutorial variant) on MNIST"}


@dataclass
class Row:
    group: str  # architecture the ratios refer to
    label: str
    source: str  # recipe file or how the row was made
    error_pct: float
    tflite_bytes: int
    tflite_zip_bytes: int
    dc_bytes: int
    latency_ms: float
    wall_s: float
    cpu_s: float | None = None  # CPU seconds of a recipe run (all threads); None for rows made from a run's files
    ref_bytes: int = 0  # float32 TFLite bytes of the group's baseline: the 1x of every ratio
    export: str = ""
    notes: list[str] = field(default_factory=list)
    role: str = ""  # preset, mean, ablation, peer, reference
    seed: int | None = None
    spread_pct: float | None = None  # a mean row: the standard deviation of the seeds' errors
    n: int = 1  # a mean row: how many seeds

    def ratios(self) -> dict:
        r = self.ref_bytes or 1
        return {"tflite_x": r / self.tflite_bytes, "zip_x": r / self.tflite_zip_bytes, "dc_x": r / self.dc_bytes}

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(self.ratios())
        return d


# --- recipes ------------------------------------------------------------------------------------


def load_example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


QUICK_MAX_SPARSITY = 0.8


def quick_variant(recipe: dict) -> tuple[dict, list[str]]:
    """The same recipe on digits, small and short (and lenet_5 for lenet_5_caffe), and what changed."""
    r = copy.deepcopy(recipe)
    notes = []
    r["dataset"] = "digits"
    r["latency_runs"] = 5
    r["name"] = (r.get("name", "recipe") + " (quick)")[:100]
    b = r["baseline"]
    if b.get("arch") == "lenet_5_caffe":
        b["arch"] = "lenet_5"
        notes.append("lenet_5_caffe needs images of at least 16x16 pixels; quick mode (8x8 digits) uses lenet_5")
    b.update(epochs=min(b.get("epochs", 2), 3), batch_size=32, learning_rate=0.003)
    if b.get("augment_shift", 0):
        b["augment_shift"] = 0
        notes.append("no random shifts: three epochs on 8x8 digits learn too little with them (the preset's 2 pixels "
                     "are for 28x28 images)")
    steps = []
    for s in r.get("steps", []):
        if s["method"] == "quantize":
            notes.append("quick mode skips the QAT step (building its graph costs more than the rest of the run)")
            continue
        s["epochs"] = 2 if s["method"] == "prune" else 1
        fs = s.get("final_sparsity")
        if isinstance(fs, dict) and max(fs.values()) > QUICK_MAX_SPARSITY:
            s["final_sparsity"] = {k: min(v, QUICK_MAX_SPARSITY) for k, v in fs.items()}
            notes.append(f"per-layer sparsities capped at {QUICK_MAX_SPARSITY:.0%}: two epochs on 1,797 digits "
                         f"cannot recover from the preset's (up to {max(fs.values()):.1%})")
        s["batch_size"] = 32
        s.pop("end_step", None)  # steps per epoch differ: reach the target at the end of fine-tuning
        s.pop("begin_step", None)
        if "frequency" in s:
            s["frequency"] = 4
        steps.append(s)
    r["steps"] = steps
    return r, notes


def plan(quick: bool, seeds: tuple[int, ...] = SEEDS) -> list[dict]:
    """What to run: [{key, group, label, file, recipe, role, seed, notes, base_from}], presets (every
    seed) first, then their ablations (seed 0), then the peers. ``base_from``: the key of the run
    whose baseline.keras this one loads instead of training its own."""
    presets = [("dc_lenet_300_100", "deep_compression_lenet_300_100.json"),
               ("dc_lenet_5", "deep_compression_lenet_5.json")]
    items = []
    for n, (key, file) in enumerate(presets):
        run_seeds = seeds[:1] if quick else seeds
        for seed in run_seeds:
            items.append({"key": f"{key}_s{seed}", "file": file, "role": "preset", "seed": seed,
                          "label": f"{PRESET}, seed {seed}", "preset": key})
    for n, (key, file) in enumerate(presets):
        if quick and n:
            continue
        for akey, (label, change, reuse) in ABLATIONS.items():
            if quick and akey not in QUICK_ABLATIONS:
                continue
            if not quick and key in PRESET_ABLATIONS and akey not in PRESET_ABLATIONS[key]:
                continue
            items.append({"key": f"{key}_{akey}", "file": file, "role": "ablation", "seed": seeds[0],
                          "label": f"ablation: {label}", "change": change, "preset": key,
                          "base_from": f"{key}_s{seeds[0]}" if reuse else None})
    items += [
        {"key": "tfmot_pcqat", "file": "mnist_prune_cluster_qat.json", "role": "peer", "seed": 0,
         "label": "peer: tfmot prune 90% + cluster 16 + PCQAT"},
        {"key": "tfmot_tutorial", "file": "tfmot_pruning_tutorial.json", "role": "peer", "seed": 0,
         "label": "peer: tfmot pruning tutorial (prune 50-80%)"},
    ]
    out = []
    for it in items:
        recipe = load_example(it["file"])
        it["notes"] = []
        it["group"] = recipe["baseline"]["arch"]
        if "change" in it and not it.pop("change")(recipe):
            continue  # the preset does not use that ingredient: nothing to take out
        if quick:
            recipe, it["notes"] = quick_variant(recipe)
        recipe["baseline"]["seed"] = it["seed"]
        recipe["name"] = (f"{recipe['name']} · {it['label'].replace(PRESET + ', ', '')}")[:100]
        it["recipe"] = recipe
        out.append(it)
    return out


# --- measuring files -------------------------------------------------------------------------


def file_row(tfl: bytes, ds, kernel_names, mode, runs: int, **kw) -> Row:
    from compression import dc
    from compression.engine.measure import measure_file

    m = measure_file(tfl, ds, runs, kernel_names, mode).metrics
    blob, _ = dc.encode(tfl)
    return Row(error_pct=100.0 * (1.0 - m["accuracy"]), tflite_bytes=m["tflite_bytes"],
               tflite_zip_bytes=m["tflite_zip_bytes"], dc_bytes=len(blob), latency_ms=m["latency_ms"],
               export=str(getattr(mode, "value", mode)), **kw)


DONE_FILE = "bench_item.json"  # beside a run the benchmark finished: the recipe it ran and its CPU seconds


def item_spec(item: dict, runs_dir: Path) -> dict:
    """The recipe an item runs (with the seed-0 preset's baseline file where it reuses one)."""
    spec = copy.deepcopy(item["recipe"])
    if item.get("base_from"):
        spec["baseline"] = {"path": str(runs_dir / item["base_from"] / "baseline.keras"), "seed": item["seed"]}
    return spec


def finished_item(folder: Path, spec: dict) -> dict | None:
    """The report of an earlier run of the same recipe in the same folder, so that a benchmark stopped
    part-way (or run with --jobs) goes on where it stopped; None if there is none. The same recipe is the
    studio's run identity (compression.studies.record.recipe_hash: name and latency repetitions left out),
    so relabelling a row never trains its run again."""
    from compression.studies.record import recipe_hash

    try:
        done = json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
        if recipe_hash(done["spec"]) != recipe_hash(spec):
            return None
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        report["bench_cpu_s"] = float(done["cpu_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return report


def _child(args: tuple[dict, str]) -> str:
    """--jobs: run one item in a worker process (one TensorFlow thread); the parent reads its folder."""
    item, runs = args
    run_item(item, Path(runs), lambda msg: print(msg, flush=True))
    return item["key"]


def run_parallel(items: list[dict], runs_dir: Path, jobs: int, log) -> None:
    """Run the items in `jobs` processes of one TensorFlow thread each (small models use a core better
    this way than one process with two threads): first those that train their own baseline, then
    those that start from a seed-0 preset's baseline. Latency is timed without waiting for a quiet
    machine (the other process is never quiet); the table says so."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    os.environ.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1",
                      COMPRESSION_LATENCY_WAIT_S="0")
    first = [it for it in items if not it.get("base_from")]
    second = [it for it in items if it.get("base_from")]
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        for phase in (first, second):
            for key in pool.map(_child, [(it, str(runs_dir)) for it in phase]):
                log(f"  {key}: finished")


def run_item(item: dict, runs_dir: Path, log) -> dict:
    """Run one recipe into runs_dir/key; returns the report."""
    from compression.engine.pipeline import run_recipe
    from compression.recipe import Recipe

    spec = item_spec(item, runs_dir)
    out = runs_dir / item["key"]
    done = finished_item(out, spec)
    if done is not None:
        log(f"reusing {out} ({item['label']}): the same recipe finished there earlier")
        return done
    recipe = Recipe.from_dict(spec)
    log(f"running {item['file']} ({item['label']}) -> {out}")
    t0, c0 = time.perf_counter(), time.process_time()
    report = run_recipe(recipe, out)
    report["bench_cpu_s"] = time.process_time() - c0
    (out / DONE_FILE).write_text(json.dumps({"spec": spec, "cpu_s": report["bench_cpu_s"]}), encoding="utf-8")
    log(f"  done in {time.perf_counter() - t0:.0f} s ({report['bench_cpu_s']:.0f} CPU s): error {100 * (1 - report['final']['accuracy']):.2f}%, "
        f"{report['final']['tflite_zip_bytes']:,} B zipped, {report['final']['dc_bytes']:,} B model.dc")
    return report


def rows_for(item: dict, report: dict, runs_dir: Path, log, first_of_group: bool) -> list[Row]:
    """The run's own row, plus, for the first preset run of a group, the baseline's float and int8
    files and the other export modes of the final model."""
    from compression.engine import models
    from compression.engine.export import to_tflite
    from compression.engine.measure import kernel_names as names_of
    from compression.inputs import data
    from compression.recipe import Recipe
    from compression.recipe.choices import ExportMode

    recipe = Recipe.from_dict(report["recipe"])
    final = report["final"]
    run_row = Row(group=item["group"], label=item["label"], source=item["file"],
                  error_pct=100.0 * (1.0 - final["accuracy"]), tflite_bytes=final["tflite_bytes"],
                  tflite_zip_bytes=final["tflite_zip_bytes"], dc_bytes=final["dc_bytes"],
                  latency_ms=final["latency_ms"], wall_s=report["timing"]["total_s"],
                  cpu_s=report["bench_cpu_s"], export=recipe.export.value, notes=list(item["notes"]),
                  role=item["role"], seed=item.get("seed"),
                  # every ratio against the float32 TFLite file of the run's own baseline, as the paper counts
                  ref_bytes=report["baseline"]["metrics"]["tflite_bytes"])
    if item.get("base_from"):
        run_row.notes.append("starts from the seed-0 preset's trained baseline: its wall and CPU time leave out "
                             "the baseline's training")
    if not first_of_group:
        return [run_row]
    folder = runs_dir / item["key"]
    runs = recipe.latency_runs
    ds = data.load(recipe.dataset).limited(recipe.max_train_samples)
    baseline = models.load_model(folder / "baseline.keras")
    ds = models.adapt(baseline, ds, "baseline.keras")
    kernel_names = names_of(baseline)
    base_wall = report["baseline"]["wall_s"]
    group = item["group"]
    rows: list[Row] = []

    t0 = time.perf_counter()
    f32 = to_tflite(baseline, ExportMode.FLOAT32, ds.x_train)
    ref = file_row(f32, ds, kernel_names, ExportMode.FLOAT32, runs, group=group, label="baseline, float32 TFLite",
                   source=f"{item['file']} baseline", wall_s=0.0, role="reference", seed=item.get("seed"))
    ref.wall_s = base_wall + (time.perf_counter() - t0)
    ref.ref_bytes = ref.tflite_bytes
    rows.append(ref)
    if item["role"] == "peer":  # a group without a preset: its own float file is the reference row
        return [ref, run_row]
    t0 = time.perf_counter()
    ptq = to_tflite(baseline, ExportMode.INT8_DYNAMIC, ds.x_train)
    rows.append(file_row(ptq, ds, kernel_names, ExportMode.INT8_DYNAMIC, runs, group=group,
                         label="baseline, post-training dynamic int8", source=f"{item['file']} baseline",
                         wall_s=base_wall + (time.perf_counter() - t0), ref_bytes=ref.tflite_bytes,
                         role="reference", seed=item.get("seed")))
    run_row.label += f", {recipe.export.value}"
    rows.append(run_row)
    if not report.get("qat"):
        model = models.load_model(folder / "model.keras")
        for mode in (ExportMode.INT8_DYNAMIC, ExportMode.FLOAT16):
            if mode == recipe.export:
                continue
            t0 = time.perf_counter()
            tfl = to_tflite(model, mode, ds.x_train)
            rows.append(file_row(tfl, ds, names_of(model), mode, runs, group=group,
                                 label=f"{item['label']}, {mode.value} (same model, re-exported)",
                                 source=item["file"], ref_bytes=ref.tflite_bytes, role="reexport",
                                 seed=item.get("seed"), wall_s=report["timing"]["total_s"] + (time.perf_counter() - t0)))
    return rows


def mean_rows(rows: list[Row]) -> list[Row]:
    """One row per preset: the mean over its seeds (errors with their standard deviation, sizes)."""
    import statistics

    out = []
    groups = dict.fromkeys(r.group for r in rows if r.role == "preset")
    for group in groups:
        runs = [r for r in rows if r.group == group and r.role == "preset"]
        mean = lambda xs: float(statistics.fmean(xs))  # noqa: E731
        out.append(Row(group=group, label=f"{PRESET}, mean of {len(runs)} seed{'s' if len(runs) > 1 else ''}",
                       source=runs[0].source, error_pct=mean([r.error_pct for r in runs]),
                       tflite_bytes=round(mean([r.tflite_bytes for r in runs])),
                       tflite_zip_bytes=round(mean([r.tflite_zip_bytes for r in runs])),
                       dc_bytes=round(mean([r.dc_bytes for r in runs])), latency_ms=mean([r.latency_ms for r in runs]),
                       wall_s=mean([r.wall_s for r in runs]), cpu_s=mean([r.cpu_s or 0.0 for r in runs]),
                       ref_bytes=round(mean([r.ref_bytes for r in runs])), export=runs[0].export, role="mean",
                       spread_pct=statistics.stdev([r.error_pct for r in runs]) if len(runs) > 1 else 0.0,
                       n=len(runs)))
    return out


# --- the table ---------------------------------------------------------------------------------


def versions() -> dict:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    return {"tensorflow": tf.__version__, "tfmot": tfmot.__version__}


def kb(n: float) -> str:
    return f"{n / 1024:,.1f}"


def targets(rows: list[Row]) -> list[dict]:
    """For each group with a target: the preset's mean over its seeds against the bounds, the published
    rows it dominates (smaller and at least as accurate, by its mean) and the CPU budget."""
    from compression.studio import published

    out = []
    for group, (max_err, min_zip, min_dc) in TARGETS.items():
        mean = next((r for r in rows if r.group == group and r.role == "mean"), None)
        if mean is None:
            continue
        x = mean.ratios()
        seeds = [r for r in rows if r.group == group and r.role == "preset"]
        beaten = published.dominated_by(group, x["dc_x"], mean.error_pct)
        stretch = STRETCH.get(group)
        out.append({
            "group": group, "max_error_pct": max_err, "min_zip_x": min_zip, "min_dc_x": min_dc,
            "error_pct": mean.error_pct, "spread_pct": mean.spread_pct, "seeds": len(seeds),
            "zip_x": x["zip_x"], "dc_x": x["dc_x"], "max_cpu_s": max(r.cpu_s or 0.0 for r in seeds),
            "dominates": [p.label for p in beaten],
            "not_dominated": [p.label for p in published.for_arch(group) if p not in beaten],
            "stretch": None if stretch is None else {"max_error_pct": stretch[0], "min_dc_x": stretch[1],
                                                     "met": mean.error_pct <= stretch[0] and x["dc_x"] >= stretch[1]},
        })
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(rows: list[Row], meta: dict, quick: bool) -> str:
    lines = ["# Benchmarks: Deep Compression reproduced", ""]
    if quick:
        lines += ["**Quick mode** (8x8 digits, few epochs): a smoke test of the benchmark code, not a result.", ""]
    m = meta["machine"]
    lines += [
        f"Made by `{meta['command']}` on {meta['date']} in {meta['wall_s']:.0f} s.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}, "
        f"TensorFlow {meta['versions']['tensorflow']}, tfmot {meta['versions']['tfmot']}. "
        f"Load average at start {m['load']}, at end {meta['load_end']}: the cores were shared with other "
        "jobs, so wall times and latencies are inflated and vary between runs; errors and sizes do not "
        "depend on load.",
        "",
        "The presets ran with every seed named in their rows (their mean row: mean ± standard deviation "
        "of the error), the ablations and the peers with seed 0. Error is the test error of the exported file itself (running it "
        "with LiteRT on the full test split). Ratios are the group's float32 TFLite file (the baseline "
        "converted as is) divided by the row's bytes. `zip` is the TFLite file in a deflated zip; "
        "`model.dc` is the studio's Deep Compression container (sparse relative indices + codebook "
        "indices, Huffman-coded; it unpacks to the TFLite file byte for byte). Latency: one sample per "
        "invocation, one thread, median after warm-up. Wall: training and measuring the run, baseline included "
        "(rows made from a run's files add their export to the run's time). CPU s: CPU seconds the run took "
        "over all threads, which load does not inflate much; on an idle 2-core machine a run needs between "
        "half of it and all of it as wall time.",
        "",
    ]
    if meta.get("jobs", 1) > 1:
        lines += [f"Ran {meta['jobs']} runs at once, each in its own process with one TensorFlow thread; latency "
                  "was timed without waiting for a quiet machine, so it is inflated by the other run.", ""]
    groups = []
    for r in rows:
        if r.group not in groups:
            groups.append(r.group)
    for g in groups:
        title = GROUP_TITLES.get(g, g)
        if quick:
            title = title.replace("on MNIST", "on digits (quick mode)")
        lines += [f"## {title}", ""]
        lines += ["| row | export | test error | TFLite | zip | model.dc | TFLite x | zip x | model.dc x | latency ms | wall s | CPU s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r.group != g:
                continue
            x = r.ratios()
            err = f"{r.error_pct:.2f}%" + (f" ± {r.spread_pct:.2f}" if r.role == "mean" and r.n > 1 else "")
            label = f"**{r.label}**" if r.role == "mean" else r.label
            lines.append(f"| {label} | {r.export} | {err} | {kb(r.tflite_bytes)} KB | "
                         f"{kb(r.tflite_zip_bytes)} KB | {kb(r.dc_bytes)} KB | {x['tflite_x']:.1f}x | "
                         f"{x['zip_x']:.1f}x | {x['dc_x']:.1f}x | {r.latency_ms:.3f} | {r.wall_s:.0f} | {'' if r.cpu_s is None else f'{r.cpu_s:.0f}'} |")
        if not quick:
            from compression.studio import published

            for p in published.for_arch(g):
                base = f" (baseline {p.baseline_error_pct:.2f}%)" if p.baseline_error_pct is not None else ""
                lines.append(f"| published: {p.label} | paper | {p.error_pct:.2f}%{base} | | | | | | {p.ratio:g}x "
                             "(stored weights) | | | |")
        lines.append("")
        for r in rows:
            for n in r.notes:
                if r.group == g:
                    lines.append(f"- {r.label}: {n}")
        lines.append("")
    lines += [] if quick else ["## Targets", "",
              "The preset's mean over its seeds (± the standard deviation of the errors) against the bounds of "
              "issue 18; it dominates a published row when it is both smaller (model.dc ratio) and at least as "
              "accurate.", "",
              "| model | error (bound) | zip x (bound) | model.dc x (bound) | dominates | does not dominate | "
              "CPU s of the slowest seed (budget) |",
              "|---|---:|---:|---:|---|---|---:|"]
    for t in ([] if quick else targets(rows)):
        err_ok = t["error_pct"] <= t["max_error_pct"]
        zip_ok = t["zip_x"] >= t["min_zip_x"]
        dc_ok = t["dc_x"] >= t["min_dc_x"]
        over = "" if err_ok else ", +%.2f points" % (t["error_pct"] - t["max_error_pct"])
        cpu_ok = t["max_cpu_s"] <= CPU_BUDGET_S
        lines.append(
            f"| {GROUP_TITLES[t['group']]} | {t['error_pct']:.2f}% ± {t['spread_pct']:.2f} over {t['seeds']} seeds "
            f"(<= {t['max_error_pct']:.2f}%: {verdict(err_ok)}{over}) | "
            f"{t['zip_x']:.1f}x" + (f" ({t['min_zip_x']:.0f}x: {verdict(zip_ok)})" if t["min_zip_x"] else "") + " | "
            f"{t['dc_x']:.1f}x ({t['min_dc_x']:.0f}x: {verdict(dc_ok)}) | {', '.join(t['dominates']) or 'none'} | "
            f"{', '.join(t['not_dominated']) or 'none'} | {t['max_cpu_s']:.0f} ({CPU_BUDGET_S}: {verdict(cpu_ok)}) |")
        if t["stretch"]:
            st = t["stretch"]
            lines.append(f"| stretch: {GROUP_TITLES[t['group']]} | <= {st['max_error_pct']:.2f}% | | "
                         f">= {st['min_dc_x']:.0f}x | {verdict(st['met'])} | | |")
    lines.append("")
    abl = [r for r in rows if r.role == "ablation"]
    if abl:
        lines += ["## What each ingredient bought", "",
                  "Each ablation changes one ingredient of a preset (takes it out where the preset has it, puts it "
                  "in where it does not) and runs with seed 0, against the preset's seed-0 run. The changes are "
                  "those of having the ingredient: error with it minus error without it (negative: it lowered "
                  "the error), model.dc ratio with it minus without it.",
                  "", "| model | ingredient | in the preset | error with | error without | error change | "
                  "model.dc x with | without | ratio change |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in abl:
            ref = next((p for p in rows if p.group == r.group and p.role == "preset" and p.seed == r.seed), None)
            if ref is None:
                continue
            taken_out = r.label.startswith("ablation: without ")
            ingredient = r.label.removeprefix("ablation: ").removeprefix("without ").removeprefix("with ")
            with_, without = (ref, r) if taken_out else (r, ref)
            lines.append(f"| {GROUP_TITLES.get(r.group, r.group)} | {ingredient} | {'yes' if taken_out else 'no'} | "
                         f"{with_.error_pct:.2f}% | {without.error_pct:.2f}% | "
                         f"{with_.error_pct - without.error_pct:+.2f} points | {with_.ratios()['dc_x']:.1f}x | "
                         f"{without.ratios()['dc_x']:.1f}x | {with_.ratios()['dc_x'] - without.ratios()['dc_x']:+.1f}x |")
        lines.append("")
    timing = meta.get("cluster_timing")
    if timing:
        lines += cluster_timing_lines(timing)
    return "\n".join(lines)


CLUSTER_TIMING_ROWS = ["float", "cluster16_fast", "cluster64_fast", "pcqat16_fast", "pcqat64_fast"]


def cluster_timing(runs_dir: Path, log) -> dict | None:
    """An epoch of clustering and PCQAT at 16 and 64 clusters against a float epoch of the same model,
    timed in this run after the recipes (bench/cluster_speed.py in a subprocess, the fast path the
    presets use); None, said, when it fails."""
    import subprocess

    out = runs_dir / "cluster_speed.json"
    cmd = [sys.executable, str(ROOT / "bench" / "cluster_speed.py"), "--json", str(out), "--only", *CLUSTER_TIMING_ROWS]
    log("timing a clustering epoch: " + shlex.join(cmd[1:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0 or not out.is_file():
        log(f"  the clustering timing failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return None
    return json.loads(out.read_text(encoding="utf-8"))


def cluster_timing_lines(timing: dict) -> list[str]:
    """The clustering-epoch table: each row's epoch against the float epoch measured beside it."""
    m = timing.get("meta", {})
    lines = ["## The cost of a clustering epoch, measured in this run", "",
             f"`bench/cluster_speed.py` on LeNet-300-100 ({m.get('dataset', '?')}, {m.get('n_train', '?')} training "
             f"samples, batch {m.get('batch_size', '?')}), after the recipes above, the fastest of "
             f"{m.get('rounds', '?')} epochs per row; the studio's fast clustering (every preset runs on it). "
             "Issue 18's bound: a clustering or PCQAT epoch at 64 clusters at most 1.5x a float epoch. "
             "The tfmot rows and the profile are in [cluster_speed.md](cluster_speed.md).", "",
             "| row | wall s / epoch | CPU s / epoch | wall x float | CPU x float | at most 1.5x | assignments = tfmot's argmin |",
             "|---|---:|---:|---:|---:|---|---|"]
    for r in timing.get("rows", []):
        is_float = r.get("path") == "float"
        bound = ("" if is_float or r.get("clusters") != 64 else
                 f"wall: {verdict(r['wall_x'] <= 1.5)}, CPU: {verdict(r['cpu_x'] <= 1.5)}")
        eq = "" if r.get("assignments_equal") is None else ("yes" if r["assignments_equal"] else "**no**")
        lines.append(f"| {r['label']}{'' if is_float else ' (fast)'} | {r['wall_s_min']:.2f} | {r['cpu_s_min']:.2f} | "
                     f"{r['wall_x']:.2f} | {r['cpu_x']:.2f} | {bound} | {eq} |")
    lines.append("")
    return lines


def draw_frontier(rows: list[Row], path: Path, log) -> None:
    """Error against model.dc's compression ratio (log) per network: the published rows, the presets'
    means (with the seeds' standard deviation), each seed, the ablations and the peers; a PNG."""
    import altair as alt
    import pandas as pd
    import vl_convert as vlc

    from compression.studio import charts, published

    charts_by_group = []
    for group in dict.fromkeys(r.group for r in rows):
        pubs = published.for_arch(group)
        if not pubs:
            continue
        kind = {"preset": "studio preset", "mean": "studio preset", "ablation": "studio run", "peer": "peer"}
        data = [{"label": ("mean" if r.role == "mean" else r.label.replace(f"{PRESET}, ", "").replace("ablation: ", "")),
                 "name": r.label, "kind": kind[r.role], "ratio": r.ratios()["dc_x"], "error_pct": r.error_pct,
                 "spread_pct": r.spread_pct if r.role == "mean" else float("nan")}
                for r in rows if r.group == group and r.role in kind and r.role != "preset"]
        data += [{"label": p.method, "name": p.label, "kind": "published", "ratio": float(p.ratio),
                  "error_pct": p.error_pct, "spread_pct": float("nan")} for p in pubs]
        df = pd.DataFrame(data, columns=["label", "name", "kind", "ratio", "error_pct", "spread_pct"])
        charts_by_group.append(charts.frontier_chart(df, GROUP_TITLES.get(group, group)))
    if not charts_by_group:
        return
    spec = alt.hconcat(*charts_by_group).to_dict()
    path.write_bytes(vlc.vegalite_to_png(spec, scale=1.5))
    log(f"wrote {path}")


def write_out(path: Path, text: str) -> None:
    keep = ""
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        if NOTES_MARK in old:
            keep = old[old.index(NOTES_MARK):]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + ("\n" + keep if keep else ""), encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="8x8 digits, few epochs: checks the code in about a minute")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown table (default docs/benchmarks.md; quick mode: RUNS/benchmarks.md)")
    ap.add_argument("--runs", type=Path, default=None, help="folder for the run folders (default: a temporary one)")
    ap.add_argument("--only", nargs="*", default=None, help="run only these keys (for trying a preset)")
    ap.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS), help="seeds of every preset (default 0 1 2)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once, each in its own process with one TensorFlow thread (default 1)")
    ap.add_argument("--no-timing", action="store_true",
                    help="leave out the clustering-epoch timing (full mode runs it after the recipes; quick mode never)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in ["bench/deep_compression.py", *(argv if argv is not None else sys.argv[1:])]),
            "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine()}
    runs_dir = args.runs or Path(tempfile.mkdtemp(prefix="bench-dc-"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    out = args.out or (runs_dir / "benchmarks.md" if args.quick else ROOT / "docs" / "benchmarks.md")

    def log(msg: str) -> None:
        print(msg, flush=True)

    rows: list[Row] = []
    items = plan(args.quick, tuple(args.seeds))
    if args.jobs > 1:
        run_parallel([it for it in items if not args.only or it["key"] in args.only], runs_dir, args.jobs, log)
        meta["jobs"] = args.jobs
    preset_groups = {it["group"] for it in items if it["role"] == "preset"}
    referenced: set[str] = set()
    for item in items:
        if args.only and item["key"] not in args.only:
            continue
        for n in item["notes"]:
            log(f"{item['file']}: {n}")
        report = run_item(item, runs_dir, log)
        # the reference rows come with the first preset run of a group (or the peer of a group without one)
        first = item["group"] not in referenced and (item["role"] == "preset" or item["group"] not in preset_groups)
        if first:
            referenced.add(item["group"])
        rows.extend(rows_for(item, report, runs_dir, log, first))
    rows.extend(mean_rows(rows))
    # per group: references, the preset's seeds and mean, re-exports, ablations, peers
    order = {g: i for i, g in enumerate(["lenet_300_100", "lenet_5_caffe", "lenet_5"])}
    roles = {"reference": 0, "preset": 1, "mean": 2, "reexport": 3, "ablation": 4, "peer": 5}
    rows.sort(key=lambda r: (order.get(r.group, 9), roles.get(r.role, 9)))
    if not args.quick and not args.only and not args.no_timing:
        meta["cluster_timing"] = cluster_timing(runs_dir, log)
    frontier = out.with_name(out.stem + "_frontier.png")
    draw_frontier(rows, frontier, log)
    meta["frontier"] = frontier.name
    meta["versions"] = versions()
    meta["wall_s"] = time.perf_counter() - t_start
    meta["load_end"] = load()
    text = markdown(rows, meta, args.quick)
    write_out(out, text)
    (out.with_suffix(".json")).write_text(json.dumps({"meta": meta, "rows": [r.to_dict() for r in rows],
                                                      "targets": targets(rows)},
                                                     indent=2), encoding="utf-8")
    log(text)
    log(f"wrote {out} and {out.with_suffix('.json')} (run folders in {runs_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
