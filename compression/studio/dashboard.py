"""What the dashboard pages need besides charts: job access, presets, recipe building.

Streamlit-free and TensorFlow-free, so it is unit-tested like the rest of the library.
Jobs go through ``compression.jobs`` (docs/ARCHITECTURE.md, "Job records").
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compression import jobs
from compression.errors import UserError
from compression.recipe import Recipe, default_step, step_to_dict
from compression.recipe import methods as method_registry
from compression.recipe.training import steps_per_epoch
from compression.studio.schedules import schedule_warnings  # noqa: F401  (re-exported)

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
STATE_ICONS = {"queued": "⏳", "running": "🏃", "succeeded": "✅", "failed": "❌", "cancelled": "⏹️"}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _record(job: Any) -> dict:
    return job if isinstance(job, dict) else job.to_dict()


def list_jobs(home: str | Path | None = None) -> list[dict]:
    """Every job record as a dict, newest first. In read-only mode nothing is written: no folder is
    created, no record of a dead job rewritten, no process killed."""
    return [_record(j) for j in jobs.list_jobs(home, write=not read_only())]


def get_job(job_id: str, home: str | Path | None = None) -> dict | None:
    try:
        return _record(jobs.get_job(job_id, home, write=not read_only()))
    except KeyError:
        return None


# --- read-only mode (demos) -------------------------------------------------------------------

READ_ONLY_ENV = "COMPRESSION_READ_ONLY"
READ_ONLY_MESSAGE = "This studio is in read-only mode: results and downloads only, no new jobs, uploads or cancels."
_read_only_secret: bool = False  # set by the app from .streamlit/secrets.toml (read_only = true)


def set_read_only_secret(value: bool) -> None:
    """The app passes secrets.toml's ``read_only`` here; the environment variable wins when set."""
    global _read_only_secret
    _read_only_secret = bool(value)


def read_only() -> bool:
    """True when COMPRESSION_READ_ONLY is 1/true/yes, or (unset) when secrets.toml said read_only = true."""
    env = os.environ.get(READ_ONLY_ENV)
    if env is not None and env.strip() != "":
        return env.strip().lower() in ("1", "true", "yes", "on")
    return _read_only_secret


def refuse_if_read_only() -> None:
    if read_only():
        raise UserError(READ_ONLY_MESSAGE)


def submit(recipe: Recipe, home: str | Path | None = None) -> str:
    refuse_if_read_only()
    return jobs.submit(recipe, home)


def cancel(job_id: str, home: str | Path | None = None) -> dict:
    refuse_if_read_only()
    return _record(jobs.cancel(job_id, home))


def save_upload(uploaded, filename: str, kind: str):
    """Check and store an upload in the workspace (refused in read-only mode); see studio.uploads."""
    refuse_if_read_only()
    from compression.studio import uploads

    return uploads.save_upload(uploaded, filename, kind)


def read_log(job: dict, home: str | Path | None = None) -> str:
    try:
        return jobs.read_log(job["id"], home)
    except (KeyError, OSError):
        return ""


def ensure_worker(home: str | Path | None = None) -> bool:
    """Start the embedded worker (jobs.ensure_worker; COMPRESSION_EMBEDDED_WORKER=0 turns it off).
    Never in read-only mode."""
    if read_only():
        return False
    try:
        return bool(jobs.ensure_worker(home))
    except Exception:  # a worker that cannot start must not break the page; Runs shows queued jobs
        return False


# --- job facts ------------------------------------------------------------------------------


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def elapsed_s(job: dict, now: datetime | None = None) -> float | None:
    start = _parse_time(job.get("started_at"))
    if start is None:
        return None
    end = _parse_time(job.get("finished_at")) or now or datetime.now(timezone.utc)
    return max(0.0, (end - start).total_seconds())


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def describe_progress(job: dict) -> str:
    """The progress line, each fact once: "prune (stage 2 of 4) · epoch 1/2 · batch 10/47".

    The engine's message repeats the stage and the epoch ("prune: epoch 1/2, batch 10/47"); only
    what it adds is kept."""
    parts = []
    stage = job.get("stage")
    index, count = job.get("stage_index"), job.get("stage_count")
    if stage:
        where = f" (stage {index + 1} of {count})" if isinstance(index, int) and isinstance(count, int) \
            and count > 1 and 0 <= index < count else ""
        parts.append(f"{stage}{where}")
    epoch = f"epoch {job['epoch']}/{job['epochs']}" if job.get("epoch") is not None and job.get("epochs") else None
    if epoch:
        parts.append(epoch)
    message = str(job.get("message") or "") if job.get("state") in ACTIVE else ""
    if stage and message.startswith(f"{stage}: "):
        message = message[len(str(stage)) + 2:]
    for piece in (p.strip() for p in message.split(", ")):
        if piece and piece != epoch and piece != stage and piece not in parts:
            parts.append(piece)
    return " · ".join(parts)


def job_summary(job: dict) -> str:
    """One line for a job list: progress while active, duration when done, the error when failed."""
    state = job.get("state")
    if state in ACTIVE:
        return describe_progress(job) or ("waiting for a worker" if state == "queued" else "starting")
    took = fmt_duration(elapsed_s(job))
    if state == "succeeded":
        return f"finished in {took}"
    if state == "failed":
        return f"failed after {took}: {job.get('error') or 'see its log'}"
    return str(job.get("message") or state)


def is_baseline(job: dict) -> bool:
    return job.get("kind") == "baseline" or not ((job.get("recipe") or {}).get("steps"))


def succeeded_with_report(jobs: list[dict]) -> list[dict]:
    return [j for j in jobs if j.get("state") == "succeeded" and j.get("run_dir")
            and (Path(j["run_dir"]) / "report.json").is_file()]


def baselines(jobs: list[dict]) -> list[dict]:
    """Succeeded baseline jobs whose baseline.keras exists."""
    return [j for j in succeeded_with_report(jobs) if is_baseline(j) and (Path(j["run_dir"]) / "baseline.keras").is_file()]


def workspace_summary(jobs: list[dict]) -> dict:
    return {"baselines": len(baselines(jobs)),
            "runs": sum(1 for j in jobs if not is_baseline(j)),
            "succeeded": sum(1 for j in jobs if j.get("state") == "succeeded"),
            "active": sum(1 for j in jobs if j.get("state") in ACTIVE),
            "failed": sum(1 for j in jobs if j.get("state") == "failed")}


# --- recipes -------------------------------------------------------------------------------


# The baseline a newcomer gets by taking every default (Baseline page, Pipeline page fallback).
# Measured on digits (1,294 training samples, 2 cores): 98.05% test accuracy, 4.7 s of training.
DEFAULT_DATASET = "digits"
DIGITS_N_TRAIN = 1294  # scikit-learn's digits: 1,797 images, 359 test, 10% of the rest for validation
DEFAULT_BASELINE = {"arch": "lenet_300_100", "epochs": 15, "batch_size": 32, "seed": 0, "learning_rate": 1e-3}
DEFAULT_MAX_TRAIN_SAMPLES: int | None = None  # no cap: digits is small enough to train whole in seconds


def baseline_recipe(name: str, dataset: str | dict, *, arch: str | None = None, model_path: str | None = None,
                    epochs: int = DEFAULT_BASELINE["epochs"], batch_size: int = DEFAULT_BASELINE["batch_size"],
                    seed: int = 0, learning_rate: float = DEFAULT_BASELINE["learning_rate"],
                    max_train_samples: int | None = None, export: str = "int8_dynamic") -> Recipe:
    """The recipe the Baseline page submits: no steps; train ``arch`` or load ``model_path``."""
    base: dict = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "learning_rate": learning_rate}
    if model_path:
        base["path"] = str(model_path)
    else:
        base["arch"] = arch
    return Recipe.from_dict({"name": name, "dataset": dataset, "baseline": base, "steps": [], "export": export,
                             "max_train_samples": max_train_samples})


def compress_recipe(baseline_job: dict | None, steps: list[dict], *, name: str, export: str,
                    allow_unsafe_order: bool = False, latency_runs: int = 50, fallback: dict | None = None) -> Recipe:
    """The recipe the Pipeline page submits: the chosen baseline run's model plus the steps.

    With no baseline job, ``fallback`` (dataset, baseline, max_train_samples of a recipe) is used:
    the run then trains its own baseline first. Raises RecipeError.
    """
    if baseline_job is not None:
        src = baseline_job.get("recipe") or {}
        data = {"dataset": src.get("dataset"), "max_train_samples": src.get("max_train_samples"),
                "baseline": {"path": str(Path(baseline_job["run_dir"]) / "baseline.keras")}}
    else:
        fb = fallback or {}
        data = {"dataset": fb.get("dataset", DEFAULT_DATASET), "max_train_samples": fb.get("max_train_samples"),
                "baseline": fb.get("baseline", dict(DEFAULT_BASELINE))}
    data.update(name=name, steps=[dict(s) for s in steps], export=export, allow_unsafe_order=allow_unsafe_order,
                latency_runs=latency_runs)
    return Recipe.from_dict(data)


def new_step(method: str) -> dict:
    return step_to_dict(default_step(method))


PRESET_KEYS = ("prune → cluster → QAT", "quick digits demo", "tfmot pruning tutorial", "textbook 50% → 95% pruning",
               "Deep Compression: LeNet-300-100 on MNIST", "Deep Compression: LeNet-5 on MNIST")
MNIST_N_TRAIN = 54_000  # full MNIST's training split after the validation hold-out
KNOWN_N_TRAIN = {"digits": DIGITS_N_TRAIN, "mnist": MNIST_N_TRAIN, "fashion_mnist": MNIST_N_TRAIN, "cifar10": 45_000}
# The paper's recipes, as the benchmark measured them (docs/benchmarks.md): taken as they are, not fitted,
# since their per-layer targets name the layers of one architecture and their schedules suit full MNIST.
DEEP_COMPRESSION_PRESETS = {
    "Deep Compression: LeNet-300-100 on MNIST": ("deep_compression_lenet_300_100.json", "lenet_300_100"),
    "Deep Compression: LeNet-5 on MNIST": ("deep_compression_lenet_5.json", "lenet_5_caffe"),
}
DEFAULT_PRESET = "prune → cluster → QAT"
MIN_PRUNE_STEPS = 300  # optimizer steps a pruning step gets at least: time to prune in ~10 updates and recover


def preset_batch_size(n_train: int) -> int:
    """Small datasets (digits) need small batches to give the optimizer enough steps."""
    return 32 if n_train < 10_000 else 128


def _epochs_for(n_train: int, batch_size: int, max_train_samples: int | None, lo: int, hi: int) -> int:
    spe = steps_per_epoch(n_train, batch_size, max_train_samples) or 1
    return max(lo, min(hi, math.ceil(MIN_PRUNE_STEPS / spe)))


def _fit(steps: list[dict], n_train: int, max_train_samples: int | None, end_fraction: float = 0.6) -> list[dict]:
    """Complete the steps with their defaults and fit each to the data as its method declares
    (a polynomial pruning schedule moves in even mask updates and ends before the step does)."""
    out = []
    for s in steps:
        full = dict(new_step(s["method"]), **s)
        spe = steps_per_epoch(n_train or DIGITS_N_TRAIN, full["batch_size"], max_train_samples) or 1
        out.append(method_registry.get(full["method"]).fit_to_data(full, spe, end_fraction))
    return out


def _named_for(name: str, dataset: str) -> str:
    """A preset's run name for the data it runs on: "... on MNIST" run on digits is "... on digits"."""
    import re

    return re.sub(r"\s+on\s+[\w-]+$", "", name) + f" on {dataset}"


def presets(n_train: int | None = None, max_train_samples: int | None = None,
            dataset: str | None = None) -> dict[str, dict]:
    """The presets, fitted to a baseline's training set (``n_train`` samples of ``dataset``, capped at
    ``max_train_samples``; default: digits). Batch sizes, epochs and every pruning schedule's
    end step and update frequency follow from the data, so no preset trips schedule_warnings.

    A preset made for one dataset (the Deep Compression presets: full MNIST; the quick demo: digits)
    carries ``made_for``; run on other data, its run name says what it runs on and ``warning`` says,
    before the run, what it expects and what to expect instead.
    """
    data_name = dataset if isinstance(dataset, str) else (DEFAULT_DATASET if n_train is None else None)
    n = int(n_train or KNOWN_N_TRAIN.get(data_name or "", DIGITS_N_TRAIN))  # a baseline built in the run: its dataset
    bs = preset_batch_size(min(n, max_train_samples) if max_train_samples else n)
    prune_epochs = _epochs_for(n, bs, max_train_samples, 2, 8)
    spe = steps_per_epoch(n, bs, max_train_samples)
    out = {
        "prune → cluster → QAT": {
            "name": "prune-cluster-qat",
            "description": (f"tfmot's collaborative optimisation: prune to 80% over {prune_epochs} epochs (sparsity rises "
                            "in ten steps during the first 60%, then recovers), cluster into 16 shared "
                            "values keeping the zeros, then one epoch of quantization-aware training that keeps both "
                            f"(PCQAT). Batch {bs}: {spe} steps per epoch on this data."),
            "steps": _fit([{"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.8, "epochs": prune_epochs,
                            "batch_size": bs, "learning_rate": 1e-3},
                           {"method": "cluster", "number_of_clusters": 16, "cluster_centroids_init": "kmeans_plus_plus",
                            "epochs": 2, "batch_size": bs, "learning_rate": 1e-4},
                           {"method": "quantize", "epochs": 1, "batch_size": 2 * bs, "learning_rate": 1e-4}],
                          n, max_train_samples),
            "export": "int8_dynamic"},
        "tfmot pruning tutorial": {
            "name": "tfmot-pruning-tutorial",
            "description": ("The TensorFlow Model Optimization pruning tutorial: polynomial decay from 50% to 80% "
                            "sparsity, the end step computed from the data, exported with int8 dynamic-range "
                            f"quantization. Batch {bs}, {prune_epochs} epochs on this data."),
            "steps": _fit([{"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.8, "epochs": prune_epochs,
                            "batch_size": bs, "learning_rate": 1e-3}], n, max_train_samples, end_fraction=1.0),
            "export": "int8_dynamic"},
        "textbook 50% → 95% pruning": {
            "name": "textbook-50-95-pruning",
            "description": ("Aggressive magnitude pruning as in the textbook example: sparsity rises from 50% to 95%; "
                            "expect a visible accuracy cost on a small model."),
            "steps": _fit([{"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.95, "epochs": prune_epochs,
                            "batch_size": bs, "learning_rate": 1e-3}], n, max_train_samples),
            "export": "float32"},
    }
    quick = EXAMPLES / "quick_digits.json"
    if quick.is_file():
        try:
            d = Recipe.load(quick).to_dict()
            out["quick digits demo"] = {
                "name": "quick-digits-demo", "file": quick.name, "export": d["export"],
                "description": "examples/quick_digits.json: prune 50% → 80%, 16 clusters, QAT; made for digits, "
                               "under a minute on two cores.",
                "steps": _fit(d["steps"], n, max_train_samples), "made_for": "digits"}
            if data_name and data_name != "digits":
                out["quick digits demo"].update(
                    name=f"quick-demo-on-{data_name}",
                    warning=f"The quick digits demo was made for digits (1,294 training samples, 8x8 images); on "
                            f"{data_name} its short fine-tuning may cost more accuracy than the demo shows.")
        except UserError:
            pass
    for key, (filename, arch) in DEEP_COMPRESSION_PRESETS.items():
        f = EXAMPLES / filename
        if not f.is_file():
            continue
        try:
            d = Recipe.load(f).to_dict()
        except UserError:
            continue
        steps = d["steps"]
        other = (n, max_train_samples) != (MNIST_N_TRAIN, None) or (data_name not in (None, d["dataset"]))
        baseline = dict(d["baseline"])
        if other:  # other data: the ramp fitted to it, half the step
            steps = _fit(steps, n, max_train_samples, end_fraction=0.5)
            if data_name != d["dataset"]:
                baseline["augment_shift"] = 0  # shifts of a few pixels suit 28x28 digits, not 8x8 ones or photos
        out[key] = {"name": d["name"], "file": f.name, "export": d["export"], "steps": steps, "arch": arch,
                    "dataset": d["dataset"], "baseline": baseline, "made_for": d["dataset"],
                    "description": (f"examples/{f.name}: Han et al.'s per-layer pruning, 16 shared values per layer "
                                    f"and PCQAT, for a {arch} baseline on full MNIST (its per-layer targets name "
                                    f"that architecture's layers). Measured in docs/benchmarks.md.")}
        if other:
            where = data_name or "this data"
            out[key].update(
                name=_named_for(d["name"], where),
                warning=(f"Made for full MNIST (54,000 training samples): its per-layer targets (up to "
                         f"{_max_target(steps):.0%} of a layer pruned) and its schedule were measured there. On "
                         f"{where} ({n:,} training samples) expect a larger loss: the LeNet-300-100 preset lost "
                         "6.7 points on digits. For a small dataset, prune less (the prune → cluster → QAT preset)."))
    return {k: out[k] for k in PRESET_KEYS if k in out}


def _max_target(steps: list[dict]) -> float:
    """The largest sparsity target any step sets (per-layer maps included)."""
    best = 0.0
    for s in steps:
        for key in ("final_sparsity", "target_sparsity"):
            v = s.get(key)
            for x in (v.values() if isinstance(v, dict) else [v]):
                if isinstance(x, (int, float)) and not isinstance(x, bool):
                    best = max(best, float(x))
    return best


def recipe_json(recipe: Recipe, home: str | Path | None = None) -> str:
    """The recipe as the Pipeline page offers it for download: paths relative to the workspace (no server
    path; the Pipeline page and ``python -m compression run`` from the workspace folder find them), no field
    its own schedule ignores (``bundle.portable_recipe``)."""
    from compression.store.workspace import home_dir
    from compression.studio.bundle import portable_recipe

    return json.dumps(portable_recipe(recipe.to_dict(), home_dir(home, create=False)), indent=2)


def baseline_facts(report: dict) -> dict:
    """Headline numbers of a baseline for the Baseline page."""
    m = (report.get("baseline") or {}).get("metrics") or {}
    final = report.get("final") or {}
    ds = report.get("dataset") or {}
    return {"accuracy": m.get("accuracy"), "params_total": m.get("params_total"),
            "keras_zip_bytes": m.get("keras_zip_bytes"), "tflite_bytes": m.get("tflite_bytes"),
            "tflite_zip_bytes": m.get("tflite_zip_bytes"), "latency_ms": m.get("latency_ms"),
            "export": final.get("export"), "export_tflite_bytes": final.get("tflite_bytes"),
            "source": (report.get("baseline") or {}).get("source"), "wall_s": (report.get("baseline") or {}).get("wall_s"),
            "dataset": ds.get("name"), "n_train": ds.get("n_train"), "n_test": ds.get("n_test"),
            "input_shape": ds.get("input_shape"), "num_classes": ds.get("num_classes")}


def methods() -> list[str]:
    return method_registry.names()
