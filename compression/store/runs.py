"""Read run folders: job records, progress, logs, reports, weights. Nothing else.

No Streamlit, no TensorFlow, no queue: the dashboard polls these every second or two,
and tests use them to watch jobs. Writers (``compression.jobs`` and the engine) write
every file here atomically, so a read returns a whole file or ``None``.

A run is named by its job id (``runs/<id>/`` under the workspace) or by a folder path.
For job records with the worker-liveness check (a ``running`` job whose worker died is
reported ``failed``), use ``compression.jobs.get_job`` / ``list_jobs``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from compression.store.workspace import is_job_id, read_json, run_dir, runs_dir

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")

RunRef = str | os.PathLike


@dataclass
class JobRecord:
    """One job, as stored in ``runs/<id>/status.json`` (plus ``run_dir``/``cancel_requested``)."""

    id: str
    name: str = ""
    kind: str = "compress"  # "baseline" (no steps) or "compress"
    recipe: dict = field(default_factory=dict)
    state: str = "queued"  # one of STATES
    progress: float = 0.0  # 0..1 over the whole recipe
    stage: str | None = None  # baseline, prune, cluster, quantize, export
    epoch: int | None = None
    epochs: int | None = None
    message: str = ""
    created_at: str | None = None  # ISO-8601 UTC
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None  # one line, set when failed
    run_dir: str = ""  # absolute, in the reader's view of the workspace
    # where and how it runs
    phase: str | None = None  # train, measure, export
    stage_index: int | None = None
    stage_count: int | None = None
    host: str | None = None  # worker host name, while/after running
    pid: int | None = None  # worker process id on that host
    pid_start: float | None = None  # that process's start time (guards against pid reuse)
    heartbeat_at: str | None = None  # last sign of life from the worker
    cancel_requested: bool = False  # a cancel was asked and the job has not ended yet
    extra: dict = field(default_factory=dict)  # fields written by newer versions

    @classmethod
    def from_dict(cls, data: dict, run_dir: str | os.PathLike = "") -> "JobRecord":
        known = {f.name for f in fields(cls)} - {"extra", "run_dir", "cancel_requested"}
        kw = {k: v for k, v in data.items() if k in known}
        kw.setdefault("id", Path(run_dir).name if run_dir else "")
        extra = {k: v for k, v in data.items() if k not in known and k not in ("run_dir", "cancel_requested")}
        return cls(**kw, run_dir=str(run_dir), extra=extra)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d

    def to_status(self) -> dict:
        """What goes into status.json: everything but the reader-dependent fields."""
        d = self.to_dict()
        d.pop("run_dir", None)
        d.pop("cancel_requested", None)
        return d

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def resolve(run: RunRef, home: RunRef | None = None) -> Path:
    """A job id (under the workspace) or a folder path, as an absolute folder path."""
    if isinstance(run, str) and is_job_id(run):
        return run_dir(run, home)
    return Path(run).expanduser().absolute()


def read_status(run: RunRef, home: RunRef | None = None) -> JobRecord | None:
    """The job record as stored, without any liveness check; None if there is none."""
    folder = resolve(run, home)
    data = read_json(folder / "status.json")
    if not isinstance(data, dict):
        return None
    rec = JobRecord.from_dict(data, folder)
    rec.cancel_requested = rec.active and (folder / "cancel").exists()
    return rec


def list_run_ids(home: RunRef | None = None) -> list[str]:
    """Ids of every run folder in the workspace, newest first."""
    root = runs_dir(home)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted((n for n in names if is_job_id(n)), reverse=True)


def list_statuses(home: RunRef | None = None) -> list[JobRecord]:
    """Every stored job record, newest first (no liveness check)."""
    out = []
    for job_id in list_run_ids(home):
        rec = read_status(job_id, home)
        if rec is not None:
            out.append(rec)
    out.sort(key=lambda r: (r.created_at or "", r.id), reverse=True)
    return out


def read_recipe(run: RunRef, home: RunRef | None = None) -> dict | None:
    return read_json(resolve(run, home) / "recipe.json")


def read_progress(run: RunRef, home: RunRef | None = None) -> dict | None:
    """The last progress event the worker wrote (the engine's event dict plus ``time``)."""
    return read_json(resolve(run, home) / "progress.json")


def read_report(run: RunRef, home: RunRef | None = None) -> dict | None:
    """report.json, present only once a run has succeeded."""
    return read_json(resolve(run, home) / "report.json")


def read_weights(run: RunRef, home: RunRef | None = None) -> dict | None:
    return read_json(resolve(run, home) / "weights.json")


def read_log(run: RunRef, home: RunRef | None = None, tail_chars: int | None = None) -> str:
    """The run's log.txt ('' if none yet); only the last ``tail_chars`` characters if given."""
    path = resolve(run, home) / "log.txt"
    try:
        with open(path, "rb") as f:
            if tail_chars:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 4 * tail_chars))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text[-tail_chars:] if tail_chars else text


def artifact_path(run: RunRef, key: str, home: RunRef | None = None) -> Path | None:
    """Path of an artifact named in report.json's ``artifacts`` (e.g. "tflite"), if it exists."""
    folder = resolve(run, home)
    report = read_report(folder) or {}
    name = (report.get("artifacts") or {}).get(key)
    if not name:
        return None
    path = folder / name
    return path if path.exists() else None


def list_runs(home: RunRef | None = None, state: str | None = None, with_report: bool = False) -> list[dict]:
    """A summary per run, newest first: id, name, kind, state, times, run_dir, has_report.

    ``state`` filters on the stored state; ``with_report`` keeps only finished runs with a
    report.json (what the comparison views want).
    """
    out = []
    for rec in list_statuses(home):
        folder = Path(rec.run_dir)
        has_report = (folder / "report.json").exists()
        if state is not None and rec.state != state:
            continue
        if with_report and not has_report:
            continue
        out.append(
            {
                "id": rec.id,
                "name": rec.name,
                "kind": rec.kind,
                "state": rec.state,
                "created_at": rec.created_at,
                "finished_at": rec.finished_at,
                "run_dir": rec.run_dir,
                "has_report": has_report,
            }
        )
    return out


__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "JobRecord",
    "STATES",
    "artifact_path",
    "list_run_ids",
    "list_runs",
    "list_statuses",
    "read_log",
    "read_progress",
    "read_recipe",
    "read_report",
    "read_status",
    "read_weights",
    "resolve",
]
