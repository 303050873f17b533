"""What the dashboard pages need besides charts: job access, presets, recipe building.

Streamlit-free and TensorFlow-free, so it is unit-tested like the rest of the library.
Jobs go through ``compression.jobs`` (docs/ARCHITECTURE.md, "Job records").
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compression import jobs
from compression.choices import Method
from compression.errors import UserError
from compression.recipe import Recipe, default_step, step_to_dict

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
STATE_ICONS = {"queued": "⏳", "running": "🏃", "succeeded": "✅", "failed": "❌", "cancelled": "⏹️"}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _record(job: Any) -> dict:
    return job if isinstance(job, dict) else job.to_dict()


def list_jobs(home: str | Path | None = None) -> list[dict]:
    """Every job record as a dict, newest first."""
    return [_record(j) for j in jobs.list_jobs(home)]


def get_job(job_id: str, home: str | Path | None = None) -> dict | None:
    try:
        return _record(jobs.get_job(job_id, home))
    except KeyError:
        return None


def submit(recipe: Recipe, home: str | Path | None = None) -> str:
    return jobs.submit(recipe, home)


def cancel(job_id: str, home: str | Path | None = None) -> dict:
    return _record(jobs.cancel(job_id, home))


def read_log(job: dict, home: str | Path | None = None) -> str:
    try:
        return jobs.read_log(job["id"], home)
    except (KeyError, OSError):
        return ""


def ensure_worker(home: str | Path | None = None) -> bool:
    """Start the embedded worker (jobs.ensure_worker; COMPRESSION_EMBEDDED_WORKER=0 turns it off)."""
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
    parts = []
    if job.get("stage"):
        parts.append(f"stage: {job['stage']}")
    if job.get("epoch") is not None and job.get("epochs"):
        parts.append(f"epoch {job['epoch']}/{job['epochs']}")
    if job.get("message") and job.get("state") in ACTIVE:
        parts.append(str(job["message"]))
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


def job_label(job: dict) -> str:
    return f"{job.get('name') or 'run'} · {job.get('id')}"


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


def baseline_recipe(name: str, dataset: str | dict, *, arch: str | None = None, model_path: str | None = None,
                    epochs: int = 2, batch_size: int = 128, seed: int = 0, learning_rate: float = 1e-3,
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
        data = {"dataset": fb.get("dataset", "digits"), "max_train_samples": fb.get("max_train_samples"),
                "baseline": fb.get("baseline", {"arch": "dense_redundant"})}
    data.update(name=name, steps=[dict(s) for s in steps], export=export, allow_unsafe_order=allow_unsafe_order,
                latency_runs=latency_runs)
    return Recipe.from_dict(data)


def new_step(method: str) -> dict:
    return step_to_dict(default_step(method))


def _preset(name: str, description: str, steps: list[dict], export: str = "int8_dynamic") -> dict:
    full = [dict(new_step(s["method"]), **s) for s in steps]
    return {"name": name, "description": description, "steps": full, "export": export}


BUILTIN_PRESETS = {
    "tfmot pruning tutorial": _preset(
        "tfmot-pruning-tutorial",
        "The TensorFlow Model Optimization pruning tutorial: polynomial decay from 50% to 80% sparsity over "
        "2 epochs at batch 128 (end step computed from the data), exported with int8 dynamic-range quantization.",
        [{"method": "prune", "schedule": "polynomial_decay", "initial_sparsity": 0.5, "final_sparsity": 0.8,
          "begin_step": 0, "end_step": None, "epochs": 2, "batch_size": 128}]),
    "textbook 50% → 95% pruning": _preset(
        "textbook-50-95-pruning",
        "Aggressive magnitude pruning as in the textbook example: sparsity rises from 50% to 95%.",
        [{"method": "prune", "schedule": "polynomial_decay", "initial_sparsity": 0.5, "final_sparsity": 0.95,
          "epochs": 2, "batch_size": 128}]),
    "prune → cluster → QAT": _preset(
        "prune-cluster-qat",
        "tfmot's collaborative optimisation: prune to 90%, cluster into 16 centroids (kmeans++) keeping the zeros, "
        "then one epoch of quantization-aware training that keeps both (PCQAT).",
        [{"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.9, "epochs": 2},
         {"method": "cluster", "number_of_clusters": 16, "cluster_centroids_init": "kmeans_plus_plus", "epochs": 1},
         {"method": "quantize", "epochs": 1}]),
}
EXAMPLE_FILES = {"tfmot pruning tutorial": "tfmot_pruning_tutorial.json",
                 "textbook 50% → 95% pruning": "textbook_prune_50_95.json",
                 "prune → cluster → QAT": "prune_cluster_qat.json"}


def presets() -> dict[str, dict]:
    """Built-in presets; where examples/*.json holds the same recipe, its steps and export win."""
    out = {k: dict(v) for k, v in BUILTIN_PRESETS.items()}
    for key, filename in EXAMPLE_FILES.items():
        f = EXAMPLES / filename
        if f.is_file():
            try:
                d = Recipe.load(f).to_dict()
            except UserError:
                continue
            out[key] = dict(out[key], name=d["name"], steps=d["steps"], export=d["export"], file=f.name)
    return out


def steps_per_epoch(n_train: int | None, batch_size: int, max_train_samples: int | None = None) -> int | None:
    if not n_train:
        return None
    n = min(n_train, max_train_samples) if max_train_samples else n_train
    return max(1, math.ceil(n / batch_size))


def schedule_warnings(recipe: Recipe, steps_per_epoch_fn) -> list[str]:
    """Sentences about pruning schedules that cannot work as written for this much data.

    ``steps_per_epoch_fn(batch_size)`` gives the optimizer steps per epoch (None if unknown).
    """
    out = []
    for i, step in enumerate(recipe.steps, start=1):
        if step.method != Method.PRUNE or step.sparsity_m_by_n:
            continue
        spe = steps_per_epoch_fn(step.batch_size) if steps_per_epoch_fn else None
        if not spe:
            continue
        total = spe * step.epochs
        end = step.end_step or total
        if step.begin_step >= total:
            out.append(f"Step {i} (prune) begins at step {step.begin_step} but trains only {total} steps: "
                       "nothing would be pruned. Lower 'Begin step'.")
        elif step.frequency >= end - step.begin_step:
            out.append(f"Step {i} (prune) trains {total} steps but updates the mask every {step.frequency}: sparsity "
                       f"jumps to {step.target:.0%} in one go, with no time to recover. Lower 'Update every' "
                       f"(e.g. {max(1, (end - step.begin_step) // 10)}) or train more epochs.")
        elif step.end_step and step.end_step > total:
            out.append(f"Step {i} (prune) ends its schedule at step {step.end_step} but trains only {total} steps: "
                       f"it stops short of {step.target:.0%}.")
    return out


def recipe_json(recipe: Recipe) -> str:
    return json.dumps(recipe.to_dict(), indent=2)


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
    return [m.value for m in Method]
