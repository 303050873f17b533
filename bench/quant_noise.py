"""Extreme quantization compared as Fan, Stock et al.'s tables do: int8, int4 and int2 weights without
training, with QAT and with Quant-Noise, and iterative product quantization with and without Quant-Noise.

    python bench/quant_noise.py [--quick] [--seeds 0 1 2] [--out docs/benchmarks.md] [--home DIR]

Full mode: LeNet-5 on Fashion-MNIST and LeNet-300-100 on MNIST (found through COMPRESSION_DATA_DIR like
every run of the studio), each over 3 seeds. One baseline is trained per (model, seed) (a baseline-only
run) and every row of that seed loads it (``{"path": ...}``), so the rows differ only in how they
compress. Every row is an ordinary recipe run through the engine; every figure is read from the
files it wrote: test error from running model.tflite, its bytes, its zipped bytes, model.dc's bytes
(model_int4.tflite's where written) and the distinct values per output channel in the file.

The run folders are written as finished jobs of a workspace (``--home``, default a temporary folder):
``COMPRESSION_HOME=DIR streamlit run app.py`` shows them on Compare and Results.

The markdown table goes between the markers ``<!-- quant-noise:start -->`` and ``<!-- quant-noise:end -->``
of ``--out`` (appended at its end the first time; the rest of the file is left alone), the rows and
the seeds' figures to ``--out`` with the suffix ``_quant_noise.json``.

``--quick`` runs the same code on scikit-learn's 8x8 digits (offline) with one seed, tiny epochs, LeNet-300-100
only and the rows that take every path (QUICK_ROWS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import compression  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from machine import load, machine  # noqa: E402  (bench/machine.py: this script's folder is on the path)

START, END = "<!-- quant-noise:start -->", "<!-- quant-noise:end -->"
QUANT_NOISE = 0.5  # share of blocks quantized per pass for int8/int4/int2 (not tuned: one value for every row)
PQ_NOISE = 0.1  # fairseq's proxy noise for iPQ: share of blocks dropped per pass (the paper's usual 0.05-0.2)

GROUPS = [
    {"key": "lenet_5", "arch": "lenet_5", "dataset": "fashion_mnist", "title": "LeNet-5 on Fashion-MNIST",
     # conv blocks: a row of a 5x5 filter (conv1), the 6 input channels at one position (conv2)
     "pq": {"block_size": {"conv1": 5, "conv2": 6, "fc1": 8, "fc2": 8, "output": 4},
            "codebook_size": {"conv1": 16, "conv2": 64, "fc1": 256, "fc2": 64, "output": 64}}},
    {"key": "lenet_300_100", "arch": "lenet_300_100", "dataset": "mnist", "title": "LeNet-300-100 on MNIST",
     "pq": {"block_size": {"fc1": 8, "fc2": 4, "output": 4},
            "codebook_size": {"fc1": 256, "fc2": 256, "output": 64}}},
]

BASELINE = {"epochs": 12, "batch_size": 128, "learning_rate": 1e-3, "lr_schedule": "cosine"}
FINE_TUNE = {"epochs": 2, "batch_size": 128, "learning_rate": 5e-4, "lr_schedule": "cosine"}
QUICK_BASELINE = {"epochs": 4, "batch_size": 32, "learning_rate": 3e-3}
QUICK_FINE_TUNE = {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3}
# Quick mode checks the code in about a minute and a half of CPU: one model, the rows that exercise every path
QUICK_GROUPS = ("lenet_300_100",)
QUICK_ROWS = ("float", "int8_none", "int4_none", "int4_qat", "int4_quant_noise", "int2_quant_noise", "ipq",
              "ipq_quant_noise")


def rows(group: dict, quick: bool) -> list[dict]:
    """The compared rows of a group: {key, label, bits, training, step (None: the baseline itself), export}."""
    tune = QUICK_FINE_TUNE if quick else FINE_TUNE
    out = [{"key": "float", "label": "uncompressed (float32)", "bits": 32, "training": "", "step": None,
            "export": "float32"}]
    for bits in (8, 4, 2):
        for training, extra in (("none", {"train": False}), ("QAT", {}), ("Quant-Noise", {"quant_noise": QUANT_NOISE})):
            out.append({"key": f"int{bits}_{training.lower().replace('-', '_')}", "bits": bits, "training": training,
                        "label": f"int{bits}, {'no training' if training == 'none' else training}",
                        "step": {"method": "quantize", "weight_bits": bits, **extra, **tune}, "export": "int8_full"})
    pq = dict(group["pq"], **tune, pretrain_epochs=1, kmeans_iterations=5 if quick else 20)
    out.append({"key": "ipq", "label": "iPQ", "bits": None, "training": "iPQ", "export": "float16",
                "step": {"method": "pq", **pq}})
    out.append({"key": "ipq_quant_noise", "label": "iPQ + Quant-Noise", "bits": None, "training": "iPQ + Quant-Noise",
                "export": "float16", "step": {"method": "pq", **pq, "quant_noise": PQ_NOISE}})
    return [r for r in out if r["key"] in QUICK_ROWS] if quick else out


# --- running ---------------------------------------------------------------------------------------


def install(home: Path, recipe: dict, log) -> tuple[Path, dict, float]:
    """Run a recipe into a new run folder of the workspace ``home``, recorded as a finished job; returns the
    folder, the report and the CPU seconds the run took."""
    from compression.engine.pipeline import run_recipe
    from compression.jobs.records import JobRecord, write_raw
    from compression.recipe import Recipe
    from compression.store.workspace import new_job_id, runs_dir

    parsed = Recipe.from_dict(recipe)
    reused = _finished_run(runs_dir(home), parsed.to_dict())
    if reused is not None:
        folder, report, cpu = reused
        log(f"  {parsed.name}: reused {folder.name} ({cpu:.0f} CPU s when it ran), error "
            f"{100 * (1 - report['final']['accuracy']):.2f}%")
        return folder, report, cpu
    folder = runs_dir(home) / new_job_id()
    folder.mkdir(parents=True)
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0, c0 = time.perf_counter(), time.process_time()
    report = run_recipe(parsed, folder)
    cpu = time.process_time() - c0
    finished = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    record = JobRecord(id=folder.name, name=parsed.name, kind="compress" if parsed.steps else "baseline",
                       recipe=parsed.to_dict(), state="succeeded", progress=1.0, stage="export", message="done",
                       created_at=created, started_at=created, finished_at=finished)
    write_raw(folder, record.to_status())
    (folder / CPU_FILE).write_text(json.dumps({"cpu_s": cpu}), encoding="utf-8")
    log(f"  {parsed.name}: {time.perf_counter() - t0:.0f} s, {cpu:.0f} CPU s, error "
        f"{100 * (1 - report['final']['accuracy']):.2f}%, model.dc {report['final']['dc_bytes']:,} B")
    return folder, report, cpu


CPU_FILE = "bench_cpu.json"  # beside a run the benchmark made: the CPU seconds it took


def _finished_run(runs: Path, recipe: dict) -> tuple[Path, dict, float] | None:
    """A run of the same recipe that the benchmark finished earlier in this workspace (its report and CPU
    seconds), so that a benchmark stopped part-way goes on where it stopped; None if there is none."""
    if not runs.is_dir():
        return None
    for folder in sorted(runs.iterdir()):
        try:
            if json.loads((folder / "recipe.json").read_text(encoding="utf-8")) != recipe:
                continue
            report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
            cpu = float(json.loads((folder / CPU_FILE).read_text(encoding="utf-8"))["cpu_s"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return folder, report, cpu
    return None


def figures_of(report: dict, reference_bytes: int) -> dict:
    """The figures a row shows, read from the run's report (itself measured on the files)."""
    from compression.recipe.figures import max_distinct

    final = report["final"]
    int4 = final.get("int4") or {}
    out = {"error_pct": 100.0 * (1.0 - final["accuracy"]), "tflite_bytes": final["tflite_bytes"],
           "tflite_zip_bytes": final["tflite_zip_bytes"], "dc_bytes": final["dc_bytes"],
           "int4_bytes": final.get("int4_bytes"), "int4_error_pct": 100.0 * (1.0 - int4["accuracy"]) if int4 else None,
           "distinct_per_channel": max_distinct(final), "reference_bytes": reference_bytes}
    out["dc_x"] = reference_bytes / out["dc_bytes"]
    out["zip_x"] = reference_bytes / out["tflite_zip_bytes"]
    return out


def run_group(group: dict, seeds: list[int], quick: bool, home: Path, log) -> list[dict]:
    """Every row of a group over the seeds: [{row..., seeds: {seed: figures}}]."""
    dataset = "digits" if quick else group["dataset"]
    table = rows(group, quick)
    for row in table:
        row["seeds"], row["cpu_s"], row["runs"] = {}, 0.0, []
    for seed in seeds:
        base = dict(QUICK_BASELINE if quick else BASELINE, arch=group["arch"], seed=seed)
        log(f"{group['title']}, seed {seed}: baseline")
        folder, report, cpu = install(home, {"name": f"{group['key']} baseline s{seed}", "dataset": dataset,
                                             "baseline": base, "steps": [], "export": "float32",
                                             "latency_runs": 5}, log)
        reference = report["final"]["tflite_bytes"]  # the float32 file of this baseline: every ratio's 1x
        path = str(folder / "model.keras")
        for row in table:
            if row["step"] is None:
                row["seeds"][seed], row["cpu_s"] = figures_of(report, reference), row["cpu_s"] + cpu
                row["runs"].append(folder.name)
                continue
            recipe = {"name": f"{group['key']} {row['label']} s{seed}", "dataset": dataset,
                      "baseline": {"path": path, "seed": seed}, "steps": [row["step"]], "export": row["export"],
                      "latency_runs": 5}
            run_folder, rep, cpu = install(home, recipe, log)
            row["seeds"][seed] = figures_of(rep, reference)
            row["cpu_s"] += cpu
            row["runs"].append(run_folder.name)
    return table


# --- the table -------------------------------------------------------------------------------------


def stats(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(table: list[dict]) -> list[dict]:
    out = []
    for row in table:
        per_seed = list(row["seeds"].values())
        s = {"key": row["key"], "label": row["label"], "bits": row["bits"], "training": row["training"],
             "n": len(per_seed), "cpu_s": row["cpu_s"], "runs": row["runs"]}
        for field in ("error_pct", "tflite_bytes", "tflite_zip_bytes", "dc_bytes", "dc_x", "zip_x"):
            s[field], s[field + "_sd"] = stats([f[field] for f in per_seed])
        int4 = [f["int4_bytes"] for f in per_seed if f.get("int4_bytes")]
        s["int4_bytes"] = statistics.fmean(int4) if int4 else None
        int4_err = [f["int4_error_pct"] for f in per_seed if f.get("int4_error_pct") is not None]
        s["int4_error_pct"] = statistics.fmean(int4_err) if int4_err else None
        s["distinct_per_channel"] = max((f["distinct_per_channel"] or 0) for f in per_seed)
        s["errors_by_seed"] = {str(k): v["error_pct"] for k, v in row["seeds"].items()}
        out.append(s)
    return out


def verdict(summary: list[dict], bits: int) -> dict | None:
    """Quant-Noise against QAT at ``bits``: mean difference in test error (QAT minus Quant-Noise: positive when
    Quant-Noise is better), its per-seed values and how many seeds Quant-Noise won; None without both rows."""
    qat = next((s for s in summary if s["key"] == f"int{bits}_qat"), None)
    noise = next((s for s in summary if s["key"] == f"int{bits}_quant_noise"), None)
    if qat is None or noise is None:
        return None
    seeds = sorted(set(qat["errors_by_seed"]) & set(noise["errors_by_seed"]), key=int)
    diffs = [qat["errors_by_seed"][k] - noise["errors_by_seed"][k] for k in seeds]
    mean, sd = stats(diffs) if diffs else (0.0, 0.0)
    return {"bits": bits, "qat_error_pct": qat["error_pct"], "quant_noise_error_pct": noise["error_pct"],
            "gain_points": mean, "gain_sd": sd, "per_seed": dict(zip(seeds, diffs)),
            "wins": sum(d > 0 for d in diffs), "seeds": len(diffs)}


def kb(n) -> str:
    return "" if n is None else f"{n / 1024:,.1f}"


def pm(mean: float, sd: float, n: int, fmt: str = ".2f") -> str:
    return f"{mean:{fmt}} ± {sd:{fmt}}" if n > 1 else f"{mean:{fmt}}"


def markdown(groups: list[tuple[dict, list[dict]]], meta: dict, quick: bool) -> str:
    m = meta["machine"]
    seeds = meta["seeds"]
    lines = [START, "# Benchmarks: extreme quantization (Quant-Noise, int4/int2, iPQ)", ""]
    if quick:
        lines += ["**Quick mode** (8x8 digits, one seed, tiny epochs, one model, fewer rows): a smoke test of the "
                  "benchmark code, not a result.", ""]
    lines += [
        f"Made by `{meta['command']}` on {meta['date']} in {meta['wall_s']:.0f} s wall, {meta['cpu_s']:.0f} CPU s "
        f"(the benchmark's process, all threads), seeds {', '.join(map(str, seeds))}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores shared with other jobs, {m['system']}, Python {m['python']}, "
        f"TensorFlow {meta['versions']['tensorflow']}, tfmot {meta['versions']['tfmot']}, ai-edge-quantizer "
        f"{meta['versions']['ai_edge_quantizer']}. Load average at start {m['load']}, at end {meta['load_end']}.",
        "",
        "One baseline per model and seed (Adam, cosine decay, "
        f"{(QUICK_BASELINE if quick else BASELINE)['epochs']} epochs) is shared by every row of that seed. Rows "
        "that train fine-tune for "
        f"{(QUICK_FINE_TUNE if quick else FINE_TUNE)['epochs']} epoch(s) (Adam "
        f"{(QUICK_FINE_TUNE if quick else FINE_TUNE)['learning_rate']:g}, cosine); iPQ fine-tunes one epoch before "
        "the first layer and one after each layer is quantized. QAT at 8 bits is tfmot's int8 scheme (weights "
        "and activations); at 4 and 2 bits a tfmot quantize config on the weights (symmetric, narrow range: 15 "
        "and 3 levels, one scale per output channel). Quant-Noise quantizes "
        f"{QUANT_NOISE:.0%} of the weights in each training pass (blocks of 1, not tuned); iPQ's Quant-Noise "
        f"drops {PQ_NOISE:.0%} of the blocks of the layers not yet quantized (fairseq's proxy). The int rows "
        "export int8_full (every layer int8, so every kernel holds its levels per channel in the file); the iPQ "
        "rows export float16 (the reconstructed kernels; model.dc stores codes and codebooks).",
        "",
        "Error: test error of model.tflite, run with LiteRT on the full test split; mean ± sample standard "
        "deviation over the seeds. Sizes are means (they barely move between seeds). `x` columns: the "
        "baseline's float32 TFLite file divided by the row's model.dc or zipped TFLite file. `levels`: the most "
        "distinct values in one output channel of any kernel, read from the file. `int4 file`: "
        "model_int4.tflite (ai-edge-quantizer, int4 weights, weight-only) and its own test error.",
        "",
    ]
    for group, summary in groups:
        title = group["title"] if not quick else f"{group['title'].split(' on ')[0]} on digits (quick mode)"
        gs = group.get("seeds") or seeds
        lines += [f"## {title}", "", f"Seeds {', '.join(map(str, gs))}"
                  + (" (fewer than the other groups: see the notes)." if len(gs) < len(seeds) else "."), "",
                  "| row | test error % | TFLite KB | zip KB | model.dc KB | model.dc x | zip x | levels | "
                  "int4 file KB (error %) | CPU s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in summary:
            int4 = f"{kb(s['int4_bytes'])} ({s['int4_error_pct']:.2f})" if s["int4_bytes"] else ""
            lines.append(f"| {s['label']} | {pm(s['error_pct'], s['error_pct_sd'], s['n'])} | {kb(s['tflite_bytes'])} | "
                         f"{kb(s['tflite_zip_bytes'])} | {kb(s['dc_bytes'])} | {s['dc_x']:.1f}x | {s['zip_x']:.1f}x | "
                         f"{s['distinct_per_channel']:,} | {int4} | {s['cpu_s']:.0f} |")
        lines.append("")
        for bits in (4, 2):
            v = verdict(summary, bits)
            if v is None:
                continue
            better = "beats" if v["gain_points"] > 0 else "does not beat"
            lines.append(f"- {bits} bits: Quant-Noise {better} QAT here: {v['quant_noise_error_pct']:.2f}% against "
                         f"{v['qat_error_pct']:.2f}% error, a gain of {v['gain_points']:+.2f} points "
                         f"(± {v['gain_sd']:.2f} over the seeds' paired differences), better on {v['wins']} of "
                         f"{v['seeds']} seed(s).")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Put ``text`` between the markers of ``path`` (appended the first time), leaving the rest alone."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if START in old and END in old:
        new = old[:old.index(START)] + text + old[old.index(END) + len(END):]
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "") + text + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    try:
        aeq = version("ai-edge-quantizer")
    except PackageNotFoundError:
        aeq = "not installed"
    return {"tensorflow": tf.__version__, "tfmot": tfmot.__version__, "ai_edge_quantizer": aeq}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="8x8 digits, one seed, tiny epochs, fewer rows: checks the code")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2; quick: 0)")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file (default docs/benchmarks.md; quick mode: HOME/benchmarks.md)")
    ap.add_argument("--home", type=Path, default=None, help="workspace for the run folders (default: a temporary one)")
    ap.add_argument("--only", nargs="*", default=None, help="only these groups (lenet_5, lenet_300_100)")
    ap.add_argument("--group-seeds", nargs="*", default=[], metavar="GROUP=SEEDS",
                    help="other seeds for a group, e.g. lenet_5=0 or lenet_5=0,1 (the table says so)")
    args = ap.parse_args(argv)

    t_start, c_start = time.perf_counter(), time.process_time()
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in ["bench/quant_noise.py",
                                                                      *(argv if argv is not None else sys.argv[1:])]),
            "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine()}
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-qn-"))
    home.mkdir(parents=True, exist_ok=True)
    out = args.out or (home / "benchmarks.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    meta["seeds"] = seeds

    def log(msg: str) -> None:
        print(msg, flush=True)

    groups = []
    for group in GROUPS:
        if (args.only and group["key"] not in args.only) or (args.quick and group["key"] not in QUICK_GROUPS):
            continue
        own = dict(a.split("=", 1) for a in args.group_seeds).get(group["key"])
        group_seeds = [int(x) for x in own.split(",")] if own else seeds
        table = run_group(group, group_seeds, args.quick, home, log)
        groups.append((dict(group, seeds=group_seeds), summarise(table), table))
    meta["versions"] = versions()
    meta["wall_s"] = time.perf_counter() - t_start
    meta["cpu_s"] = time.process_time() - c_start
    meta["load_end"] = load()
    text = markdown([(g, s) for g, s, _t in groups], meta, args.quick)
    write_section(out, text)
    result = {"meta": meta, "groups": [{"key": g["key"], "title": g["title"], "rows": s,
                                        "verdicts": [verdict(s, 4), verdict(s, 2)],
                                        "seeds": {r["key"]: r["seeds"] for r in t}} for g, s, t in groups]}
    json_path = out.with_name(out.stem + "_quant_noise.json")
    json_path.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    log(text)
    log(f"wrote {out} and {json_path}; the runs: COMPRESSION_HOME={home} streamlit run app.py (Compare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
