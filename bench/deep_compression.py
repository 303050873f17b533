"""Deep Compression reproduced: the two presets against the paper's table and the usual peers.

    python bench/deep_compression.py [--quick] [--out docs/benchmarks.md] [--runs DIR]

Full mode (MNIST, found through COMPRESSION_DATA_DIR like every run of the studio) runs,
in one process and with the same seed (0) for every recipe:

* examples/deep_compression_lenet_300_100.json and examples/deep_compression_lenet_5.json;
* from each preset's own baseline (the run folder's baseline.keras): the float32 TFLite file
  (the 1x reference of every ratio in its group) and post-training dynamic int8;
* each preset's final model exported in the other modes (float16 / int8) where the final model
  is not a QAT model, since the Deep Compression container can be smaller from float weights;
* the peers a user would otherwise pick: examples/tfmot_pruning_tutorial.json and
  examples/mnist_prune_cluster_qat.json.

Every figure is read from the exported file: test error from running it, its bytes, its
zipped bytes, model.dc's bytes, batch-1 latency. The markdown table goes to ``--out``
with the command and the machine; anything below the line ``<!-- notes -->`` in an existing
``--out`` file is kept (hand-written notes on what was tried).

``--quick`` runs the same code on scikit-learn's 8x8 digits (offline) with small epoch
counts; lenet_5_caffe cannot take 8x8 images, so quick mode substitutes lenet_5 and says so.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
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

EXAMPLES = ROOT / "examples"
NOTES_MARK = "<!-- notes -->"

# Han, Mao and Dally, Deep Compression (ICLR 2016), Table 1 (sizes, errors) and Tables 2-3.
PAPER = {
    "lenet_300_100": {"label": "paper: Deep Compression (Han et al. 2016, Table 1)", "ref_kb": 1070,
                      "kb": 27, "ratio": 40, "error_pct": 1.58, "baseline_error_pct": 1.64},
    "lenet_5_caffe": {"label": "paper: Deep Compression (Han et al. 2016, Table 1)", "ref_kb": 1720,
                      "kb": 44, "ratio": 39, "error_pct": 0.74, "baseline_error_pct": 0.80},
}

# Targets of issue 10: (max test error %, min zipped-TFLite ratio, min model.dc ratio).
TARGETS = {"lenet_300_100": (1.60, 40.0, 60.0), "lenet_5_caffe": (0.80, 39.0, 60.0)}

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
    steps = []
    for s in r.get("steps", []):
        if s["method"] == "quantize":
            notes.append("quick mode skips the QAT step (building its graph costs more than the rest of the run)")
            continue
        s["epochs"] = 2 if s["method"] == "prune" else 1
        s["batch_size"] = 32
        s.pop("end_step", None)  # steps per epoch differ: reach the target at the end of fine-tuning
        s.pop("begin_step", None)
        if "frequency" in s:
            s["frequency"] = 4
        steps.append(s)
    r["steps"] = steps
    return r, notes


def plan(quick: bool) -> list[dict]:
    """What to run: [{key, group, label, file, recipe, role, notes}]."""
    items = [
        {"key": "dc_lenet_300_100", "file": "deep_compression_lenet_300_100.json", "role": "preset",
         "label": "Deep Compression preset (studio)"},
        {"key": "dc_lenet_5", "file": "deep_compression_lenet_5.json", "role": "preset",
         "label": "Deep Compression preset (studio)"},
        {"key": "tfmot_pcqat", "file": "mnist_prune_cluster_qat.json", "role": "peer",
         "label": "peer: tfmot prune 90% + cluster 16 + PCQAT"},
        {"key": "tfmot_tutorial", "file": "tfmot_pruning_tutorial.json", "role": "peer",
         "label": "peer: tfmot pruning tutorial (prune 50-80%)"},
    ]
    for it in items:
        recipe = load_example(it["file"])
        it["notes"] = []
        it["group"] = recipe["baseline"]["arch"]
        if quick:
            recipe, it["notes"] = quick_variant(recipe)
        recipe["baseline"]["seed"] = 0  # one seed policy for every row
        it["recipe"] = recipe
    return items


# --- measuring files -------------------------------------------------------------------------


def file_row(tfl: bytes, ds, kernel_names, mode, runs: int, **kw) -> Row:
    from compression import dc
    from compression.engine.measure import measure_file

    m = measure_file(tfl, ds, runs, kernel_names, mode).metrics
    blob, _ = dc.encode(tfl)
    return Row(error_pct=100.0 * (1.0 - m["accuracy"]), tflite_bytes=m["tflite_bytes"],
               tflite_zip_bytes=m["tflite_zip_bytes"], dc_bytes=len(blob), latency_ms=m["latency_ms"],
               export=str(getattr(mode, "value", mode)), **kw)


def run_item(item: dict, runs_dir: Path, log) -> dict:
    """Run one recipe into runs_dir/key; returns the report."""
    from compression.engine.pipeline import run_recipe
    from compression.recipe import Recipe

    recipe = Recipe.from_dict(item["recipe"])
    out = runs_dir / item["key"]
    log(f"running {item['file']} -> {out}")
    t0, c0 = time.perf_counter(), time.process_time()
    report = run_recipe(recipe, out)
    report["bench_cpu_s"] = time.process_time() - c0
    log(f"  done in {time.perf_counter() - t0:.0f} s ({report['bench_cpu_s']:.0f} CPU s): error {100 * (1 - report['final']['accuracy']):.2f}%, "
        f"{report['final']['tflite_zip_bytes']:,} B zipped, {report['final']['dc_bytes']:,} B model.dc")
    return report


def rows_for(item: dict, report: dict, runs_dir: Path, log) -> list[Row]:
    """The run's own row, plus (for presets) the baseline's float and int8 files and the other
    export modes of the final model."""
    from compression.inputs import data
    from compression.recipe.choices import ExportMode
    from compression.engine import models
    from compression.engine.export import to_tflite
    from compression.recipe import Recipe

    recipe = Recipe.from_dict(item["recipe"])
    final = report["final"]
    run_row = Row(group=item["group"], label=item["label"], source=item["file"],
                  error_pct=100.0 * (1.0 - final["accuracy"]), tflite_bytes=final["tflite_bytes"],
                  tflite_zip_bytes=final["tflite_zip_bytes"], dc_bytes=final["dc_bytes"],
                  latency_ms=final["latency_ms"], wall_s=report["timing"]["total_s"],
                  cpu_s=report["bench_cpu_s"], export=recipe.export.value, notes=list(item["notes"]))
    if item["role"] == "peer" and item.get("has_preset"):
        # ratios against its own baseline's float32 TFLite file, which the run measured (the same
        # architecture, hence the same bytes, as the group's reference row)
        run_row.ref_bytes = report["baseline"]["metrics"]["tflite_bytes"]
        return [run_row]
    folder = runs_dir / item["key"]
    runs = recipe.latency_runs
    ds = data.load(recipe.dataset).limited(recipe.max_train_samples)
    baseline = models.load_model(folder / "baseline.keras")
    ds = models.adapt(baseline, ds, "baseline.keras")
    from compression.engine.metrics import keras_weights

    kernel_names = [lw.name for lw in keras_weights(baseline)]
    base_wall = report["baseline"]["wall_s"]
    group = item["group"]
    rows: list[Row] = []

    t0 = time.perf_counter()
    f32 = to_tflite(baseline, ExportMode.FLOAT32, ds.x_train)
    ref = file_row(f32, ds, kernel_names, ExportMode.FLOAT32, runs, group=group, label="baseline, float32 TFLite",
                   source=f"{item['file']} baseline", wall_s=0.0)
    ref.wall_s = base_wall + (time.perf_counter() - t0)
    ref.ref_bytes = ref.tflite_bytes
    if item["role"] == "peer":  # a group without a preset: its own float file is the reference row
        run_row.ref_bytes = ref.tflite_bytes
        return [ref, run_row]

    rows.append(ref)
    t0 = time.perf_counter()
    ptq = to_tflite(baseline, ExportMode.INT8_DYNAMIC, ds.x_train)
    rows.append(file_row(ptq, ds, kernel_names, ExportMode.INT8_DYNAMIC, runs, group=group,
                         label="baseline, post-training dynamic int8", source=f"{item['file']} baseline",
                         wall_s=base_wall + (time.perf_counter() - t0), ref_bytes=ref.tflite_bytes))
    run_row.ref_bytes = ref.tflite_bytes
    run_row.label += f", {recipe.export.value}"
    rows.append(run_row)
    if not report.get("qat"):
        model = models.load_model(folder / "model.keras")
        for mode in (ExportMode.INT8_DYNAMIC, ExportMode.FLOAT16):
            if mode == recipe.export:
                continue
            t0 = time.perf_counter()
            tfl = to_tflite(model, mode, ds.x_train)
            rows.append(file_row(tfl, ds, kernel_names, mode, runs, group=group,
                                 label=f"{item['label']}, {mode.value} (same model, re-exported)",
                                 source=item["file"], ref_bytes=ref.tflite_bytes,
                                 wall_s=report["timing"]["total_s"] + (time.perf_counter() - t0)))
    return rows


# --- the table ---------------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "load": [round(x, 2) for x in load]}


def versions() -> dict:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    return {"tensorflow": tf.__version__, "tfmot": tfmot.__version__}


def kb(n: float) -> str:
    return f"{n / 1024:,.1f}"


def targets(rows: list[Row]) -> list[dict]:
    """For each group with a target: the best row of the preset under the error bound."""
    out = []
    for group, (max_err, min_zip, min_dc) in TARGETS.items():
        preset = [r for r in rows if r.group == group and r.label.startswith("Deep Compression preset")]
        if not preset:
            continue
        main = preset[0]  # the preset's own export
        best_dc = min(preset, key=lambda r: r.dc_bytes)
        out.append({
            "group": group, "max_error_pct": max_err, "min_zip_x": min_zip, "min_dc_x": min_dc,
            "error_pct": main.error_pct, "zip_x": main.ratios()["zip_x"], "dc_x": main.ratios()["dc_x"],
            "best_dc_row": best_dc.label, "best_dc_x": best_dc.ratios()["dc_x"], "best_dc_error_pct": best_dc.error_pct,
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
        "Every recipe ran with seed 0. Error is the test error of the exported file itself (running it "
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
            lines.append(f"| {r.label} | {r.export} | {r.error_pct:.2f}% | {kb(r.tflite_bytes)} KB | "
                         f"{kb(r.tflite_zip_bytes)} KB | {kb(r.dc_bytes)} KB | {x['tflite_x']:.1f}x | "
                         f"{x['zip_x']:.1f}x | {x['dc_x']:.1f}x | {r.latency_ms:.3f} | {r.wall_s:.0f} | {'' if r.cpu_s is None else f'{r.cpu_s:.0f}'} |")
        p = PAPER.get(g)
        if p and not quick:
            lines.append(f"| {p['label']} | Caffe, P+Q+H | {p['error_pct']:.2f}% (baseline {p['baseline_error_pct']:.2f}%) | "
                         f"{p['ref_kb']:,} KB (float) | | {p['kb']} KB | | | {p['ratio']}x | | | |")
        lines.append("")
        for r in rows:
            for n in r.notes:
                if r.group == g:
                    lines.append(f"- {r.label}: {n}")
        lines.append("")
    if not quick:
        lines += ["## Targets", "",
                  "| model | bound on error | error | zip x (target) | model.dc x (target) | smallest model.dc of the preset |",
                  "|---|---:|---:|---:|---:|---|"]
        for t in targets(rows):
            err_ok = t["error_pct"] <= t["max_error_pct"]
            zip_ok = t["zip_x"] >= t["min_zip_x"]
            dc_ok = t["dc_x"] >= t["min_dc_x"]
            over = "" if err_ok else ", +%.2f points" % (t["error_pct"] - t["max_error_pct"])
            lines.append(
                f"| {GROUP_TITLES[t['group']]} | <= {t['max_error_pct']:.2f}% | {t['error_pct']:.2f}% "
                f"({verdict(err_ok)}{over}) | "
                f"{t['zip_x']:.1f}x ({t['min_zip_x']:.0f}x: {verdict(zip_ok)}) | "
                f"{t['dc_x']:.1f}x ({t['min_dc_x']:.0f}x: {verdict(dc_ok)}) | "
                f"{t['best_dc_x']:.1f}x at {t['best_dc_error_pct']:.2f}% ({t['best_dc_row']}) |")
        lines.append("")
    return "\n".join(lines)


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
    items = plan(args.quick)
    preset_groups = {it["group"] for it in items if it["role"] == "preset"}
    for item in items:
        item["has_preset"] = item["group"] in preset_groups
    for item in items:
        if args.only and item["key"] not in args.only:
            continue
        for n in item["notes"]:
            log(f"{item['file']}: {n}")
        report = run_item(item, runs_dir, log)
        rows.extend(rows_for(item, report, runs_dir, log))
    # presets first within each group, peers after
    order = {g: i for i, g in enumerate(["lenet_300_100", "lenet_5_caffe", "lenet_5"])}
    rows.sort(key=lambda r: order.get(r.group, 9))
    meta["versions"] = versions()
    meta["wall_s"] = time.perf_counter() - t_start
    meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
    text = markdown(rows, meta, args.quick)
    write_out(out, text)
    (out.with_suffix(".json")).write_text(json.dumps({"meta": meta, "rows": [r.to_dict() for r in rows],
                                                      "targets": targets(rows)}, indent=2), encoding="utf-8")
    log(text)
    log(f"wrote {out} and {out.with_suffix('.json')} (run folders in {runs_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
