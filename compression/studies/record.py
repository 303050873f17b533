"""A study's record on disk: ``study.json`` (the state, the runs and, once done, the aggregate),
``log.txt`` (what happened, one line each), ``study.npz`` (gallery arrays) and ``spec.json``.

In a workspace a study lives in ``$COMPRESSION_HOME/studies/<study id>/`` beside ``runs/``; the
foreground command writes the same files into its ``--out`` folder. Every write is atomic (a
reader sees the old file or the new one). A study id is ``s-YYYYMMDD-HHMMSS-xxxxxx``, so it is
never mistaken for a job id.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from compression.store.workspace import (
    append_text, atomic_write_json, home_dir, new_job_id, now_iso, read_json, json_problem,
)

STUDY_FILE = "study.json"
LOG_FILE = "log.txt"
ARRAYS_FILE = "study.npz"
TAGS_FILE = "studies.json"  # in a run folder: the studies that use the run
STUDY_ID_RE = re.compile(r"^s-\d{8}-\d{6}-[0-9a-f]{6}$")
STATES = ("running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")


def is_study_id(text) -> bool:
    return isinstance(text, str) and bool(STUDY_ID_RE.match(text))


def new_study_id() -> str:
    return "s-" + new_job_id()


def studies_dir(home: str | os.PathLike | None = None, create: bool = True) -> Path:
    path = home_dir(home) / "studies"
    if create:
        path.mkdir(exist_ok=True)
    return path


def study_dir(study_id: str, home: str | os.PathLike | None = None) -> Path:
    if not is_study_id(study_id):
        raise ValueError(f"{study_id!r} is not a study id (expected e.g. s-20260101-120000-a1b2c3)")
    return studies_dir(home, create=False) / study_id


def list_study_ids(home: str | os.PathLike | None = None) -> list[str]:
    try:
        names = os.listdir(studies_dir(home, create=False))
    except FileNotFoundError:
        return []
    return sorted((n for n in names if is_study_id(n)), reverse=True)


def new_record(study_id: str, spec, cost) -> dict:
    """The record of a study that has not started a run yet."""
    return {"id": study_id, "kind": spec.kind, "name": spec.name, "spec": spec.to_dict(), "state": "running",
            "created_at": now_iso(), "finished_at": None, "message": "starting", "error": None,
            "progress": {"done": 0, "planned": cost.runs or 1, "active": 0},
            "cost": {"runs": cost.runs, "epochs": cost.epochs, "text": cost.text},
            "runs": [], "retries": {}}


def read_record(folder: str | os.PathLike) -> tuple[dict | None, str | None]:
    """(study.json, None) or (None, why it cannot be read)."""
    data, problem = json_problem(Path(folder) / STUDY_FILE)
    if problem is None and (not isinstance(data, dict) or data.get("state") not in STATES
                            or not isinstance(data.get("runs"), list)):
        return None, f"{STUDY_FILE} is not a study record"
    return data, problem


def write_record(folder: str | os.PathLike, record: dict, fsync: bool = False) -> None:
    atomic_write_json(Path(folder) / STUDY_FILE, record, fsync=fsync)


def log(folder: str | os.PathLike, text: str) -> None:
    try:
        append_text(Path(folder) / LOG_FILE, f"[{now_iso()}] {text}\n")
    except OSError:
        pass


def write_arrays(folder: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    folder = Path(folder)
    tmp = folder / f".{ARRAYS_FILE}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, folder / ARRAYS_FILE)


def read_arrays(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    try:
        with np.load(Path(folder) / ARRAYS_FILE, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # missing or damaged: the page shows the figures without the gallery
        return {}


def recipe_hash(recipe: dict) -> str:
    """The identity of a run: the resolved recipe without its name and its latency repetitions (neither
    changes what a run computes), so the same baseline, recipe and seed are one run in a workspace."""
    keep = {k: v for k, v in recipe.items() if k not in ("name", "latency_runs")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:24]


def read_tags(run_dir: str | os.PathLike) -> list[str]:
    data = read_json(Path(run_dir) / TAGS_FILE)
    return [t for t in data if is_study_id(t)] if isinstance(data, list) else []


def summary(record: dict) -> str:
    """One line: state and progress."""
    p = record.get("progress") or {}
    return f"{p.get('done', 0)} of {p.get('planned', '?')} runs done"


__all__ = ["ARRAYS_FILE", "FINAL_STATES", "LOG_FILE", "STATES", "STUDY_FILE", "TAGS_FILE", "is_study_id",
           "list_study_ids", "log", "new_record", "new_study_id", "read_arrays", "read_record", "read_tags",
           "recipe_hash", "study_dir", "studies_dir", "summary", "write_arrays", "write_record"]

