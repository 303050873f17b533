"""The one reader of run folders: job records, progress, logs, reports, weights, predictions.

No Streamlit, no TensorFlow, no queue: the dashboard polls these every second or two,
the Results and Compare pages load finished runs through ``load_run``, and tests use them
to watch jobs. Writers (``compression.jobs`` and the engine) write every file atomically,
so a read returns a whole file or ``None``. Every reader tolerates a missing or broken
file; a damaged ``status.json`` becomes a record with state ``damaged`` and a one-line
``error``, never an exception.

Every path taken from a file in a run folder (``report.json``'s ``artifacts``) is
confined to that folder: ``../x`` or an absolute path gives ``None``.

A run is named by its job id (``runs/<id>/`` under the workspace) or by a folder path.
For job records with the worker-liveness check (a ``running`` job whose worker died is
reported ``failed``), use ``compression.jobs.get_job`` / ``list_jobs``.

Also here: ``prepare_out_dir`` / ``undo_out_dir`` for ``python -m compression run --out``
(refuse a folder that is not ours; on failure remove only what the run created).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from compression.errors import UserError
from compression.store.workspace import is_job_id, run_dir, runs_dir

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")
DAMAGED = "damaged"  # a run folder whose status.json is missing or unreadable (not in STATES)

RunRef = str | os.PathLike

ARTIFACT_DEFAULTS = {"keras": "model.keras", "baseline": "baseline.keras",
                     "weights": "weights.json", "predictions": "predictions.npz", "recipe": "recipe.json",
                     "report": "report.json"}


def _default_name(key: str) -> str | None:
    """The file an artifact key names when a report does not say: the exporters declare theirs."""
    if key in ARTIFACT_DEFAULTS:
        return ARTIFACT_DEFAULTS[key]
    from compression.engine import exporters  # the registry imports no TensorFlow

    return exporters.file_names().get(key)


class ResultsError(UserError):
    """A run folder has no usable result (yet)."""


class OutDirError(UserError):
    """``run --out`` names a folder that is not an earlier run of ours."""


# --- files ----------------------------------------------------------------------------------------


def read_json(path: str | Path) -> Any | None:
    """The JSON content of ``path``, or None when it is missing, half-written or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _json_problem(path: Path) -> tuple[Any, str | None]:
    """(content, None) or (None, one line saying what is wrong with the file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{path.name} cannot be read ({type(e).__name__}: {e})".splitlines()[0]
    try:
        return json.loads(text), None
    except ValueError as e:
        return None, f"{path.name} is not valid JSON ({e})".splitlines()[0]


def inside(folder: str | Path, name: Any) -> Path | None:
    """``folder / name`` if ``name`` is a relative path that stays inside ``folder``, else None."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    if Path(name).is_absolute():
        return None
    root = Path(folder).resolve()
    path = (root / name).resolve()
    try:
        path.relative_to(root)
    except ValueError:
        return None
    return path if path != root else None


def read_predictions(path: str | Path) -> dict[str, np.ndarray] | None:
    """predictions.npz as a dict of arrays (no pickles), or None."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            out = {}
            for key in z.files:
                try:
                    out[key] = z[key]
                except ValueError:  # an object array would need pickle: skip it
                    continue
            return out
    except Exception:  # OSError, ValueError, EOFError, zipfile.BadZipFile from a corrupt file
        return None


# --- job records ----------------------------------------------------------------------------------


@dataclass
class JobRecord:
    """One job, as stored in ``runs/<id>/status.json`` (plus ``run_dir``/``cancel_requested``)."""

    id: str
    name: str = ""
    kind: str = "compress"  # "baseline" (no steps) or "compress"
    recipe: dict = field(default_factory=dict)
    state: str = "queued"  # one of STATES, or DAMAGED for an unreadable record
    progress: float = 0.0  # 0..1 over the whole recipe
    stage: str | None = None  # baseline, prune, cluster, quantize, export
    epoch: int | None = None
    epochs: int | None = None
    message: str = ""
    created_at: str | None = None  # ISO-8601 UTC
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None  # one line, set when failed or damaged
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

    @classmethod
    def damaged(cls, folder: Path, error: str) -> "JobRecord":
        return cls(id=folder.name, name="", state=DAMAGED, error=error, run_dir=str(folder),
                   message=f"damaged: {error}")

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

    @property
    def is_damaged(self) -> bool:
        return self.state == DAMAGED


_TYPES = {"name": str, "kind": str, "recipe": dict, "message": str, "progress": (int, float),
          "stage": (str, type(None)), "epoch": (int, type(None)), "epochs": (int, type(None)),
          "error": (str, type(None)), "pid": (int, type(None)), "host": (str, type(None)),
          "created_at": (str, type(None)), "started_at": (str, type(None)), "finished_at": (str, type(None)),
          "heartbeat_at": (str, type(None))}


def _record_problem(data: Any, folder: Path) -> str | None:
    """What makes a parsed status.json unusable as a job record, or None."""
    if not isinstance(data, dict):
        return f"status.json holds a {type(data).__name__}, not a job record"
    if data.get("id", folder.name) != folder.name:
        return f"status.json names job {str(data.get('id'))[:40]!r}, not {folder.name}"
    if data.get("state") not in STATES:
        return f"status.json has an unknown state {str(data.get('state'))[:40]!r}"
    for key, types in _TYPES.items():
        if key in data and (not isinstance(data[key], types) or isinstance(data[key], bool)):
            return f"status.json field {key!r} has the wrong type ({type(data[key]).__name__})"
    return None


def resolve(run: RunRef, home: RunRef | None = None) -> Path:
    """A job id (under the workspace) or a folder path, as an absolute folder path."""
    if isinstance(run, str) and is_job_id(run):
        return run_dir(run, home)
    return Path(run).expanduser().absolute()


def read_status(run: RunRef, home: RunRef | None = None) -> JobRecord | None:
    """The job record as stored, without any liveness check.

    None if the folder does not exist; a record with state ``damaged`` (and the reason
    in ``error``) when ``status.json`` is missing, not JSON, or not a job record.
    """
    folder = resolve(run, home)
    data, problem = _json_problem(folder / "status.json")
    if problem is None:
        problem = _record_problem(data, folder)
    if problem is not None:
        if not folder.is_dir():
            return None
        return JobRecord.damaged(folder, problem)
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


def list_statuses(home: RunRef | None = None, damaged: bool = False) -> list[JobRecord]:
    """Every stored job record, newest first (no liveness check).

    Damaged records are left out, unless ``damaged=True``: then only they are returned.
    """
    out = []
    for job_id in list_run_ids(home):
        rec = read_status(job_id, home)
        if rec is not None and rec.is_damaged == damaged:
            out.append(rec)
    out.sort(key=lambda r: (r.created_at or "", r.id), reverse=True)
    return out


def read_progress(run: RunRef, home: RunRef | None = None) -> dict | None:
    """The last progress event the worker wrote (the engine's event dict plus ``time``)."""
    data = read_json(resolve(run, home) / "progress.json")
    return data if isinstance(data, dict) else None


def read_report(run: RunRef, home: RunRef | None = None) -> dict | None:
    """report.json, present only once a run has succeeded."""
    data = read_json(resolve(run, home) / "report.json")
    return data if isinstance(data, dict) else None


def read_log(run: RunRef, home: RunRef | None = None, tail_chars: int | None = None) -> str:
    """The run's log.txt ('' if none yet); only the last ``tail_chars`` characters if given."""
    path = resolve(run, home) / "log.txt"
    try:
        with open(path, "rb") as f:
            if tail_chars:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 4 * tail_chars))
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return ""
    text = data.decode("utf-8", errors="replace")
    return text[-tail_chars:] if tail_chars else text


def artifact_path(run: RunRef, key: str, home: RunRef | None = None, report: dict | None = None) -> Path | None:
    """The file report.json's ``artifacts`` names for ``key`` (e.g. "tflite"), if it exists.

    Confined to the run folder: a name that is absolute or leads out of it gives None.
    """
    folder = resolve(run, home)
    report = read_report(folder) if report is None else report
    artifacts = (report or {}).get("artifacts")
    name = (artifacts if isinstance(artifacts, dict) else {}).get(key) or _default_name(key)
    path = inside(folder, name)
    return path if path is not None and path.is_file() else None


# --- finished runs, for the Results and Compare pages ---------------------------------------------


@dataclass
class RunResult:
    """Everything the Results page shows, loaded from one run folder."""

    run_dir: Path
    report: dict
    weights: dict | None = None
    predictions: dict[str, np.ndarray] | None = None
    recipe: dict | None = None
    status: dict | None = None
    problems: list[str] = field(default_factory=list)  # optional files that were missing or broken

    @property
    def name(self) -> str:
        recipe = self.recipe or self.report.get("recipe") or {}
        return str(recipe.get("name") or self.run_dir.name)

    def artifact(self, key: str) -> Path | None:
        """Path of an artifact named in report["artifacts"], if it exists inside the run folder."""
        return artifact_path(self.run_dir, key, report=self.report)


def load_run(run: RunRef, home: RunRef | None = None) -> RunResult:
    """Load a run folder. Raises ResultsError when report.json is missing or unreadable."""
    folder = resolve(run, home)
    if not folder.is_dir():
        raise ResultsError(f"run folder {folder} does not exist")
    report = read_report(folder)
    if report is None:
        if (folder / "report.json").exists():
            raise ResultsError(f"{folder.name}: report.json is not readable JSON")
        raise ResultsError(f"{folder.name} has no report yet (the run has not finished successfully)")
    result = RunResult(run_dir=folder, report=report)
    recipe = read_json(folder / "recipe.json")
    result.recipe = recipe if isinstance(recipe, dict) else report.get("recipe")
    status = read_json(folder / "status.json")
    result.status = status if isinstance(status, dict) else None
    weights_path = result.artifact("weights")
    weights = read_json(weights_path) if weights_path else None
    result.weights = weights if isinstance(weights, dict) else None
    if result.weights is None:
        result.problems.append("weights.json is missing or unreadable: no weight histograms")
    pred_path = result.artifact("predictions")
    result.predictions = read_predictions(pred_path) if pred_path else None
    if result.predictions is None:
        result.problems.append("predictions.npz is missing or unreadable: no changed-prediction gallery")
    return result


def try_load_run(run: RunRef, home: RunRef | None = None) -> RunResult | None:
    try:
        return load_run(run, home)
    except ResultsError:
        return None


# --- run --out --------------------------------------------------------------------------------------


def prepare_out_dir(out: str | Path) -> tuple[Path, set[str] | None, Path | None]:
    """Check ``run --out``'s folder before a run; returns what ``undo_out_dir`` needs.

    A missing or empty folder, or one holding an earlier run of ours (``report.json`` or
    ``recipe.json``), is fine; any other non-empty folder raises ``OutDirError``. Returns
    (folder, names already there or None if it did not exist, the topmost folder this
    run will create or None).
    """
    out = Path(out).expanduser().absolute()
    if out.exists():
        if not out.is_dir():
            raise OutDirError(f"--out {out} is a file, not a folder")
        names = set(os.listdir(out))
        if names and not names & {"report.json", "recipe.json"}:
            raise OutDirError(f"--out {out} is not empty and holds no earlier run (no report.json or "
                              "recipe.json); give a new or empty folder")
        return out, names, None
    top = out
    while not top.parent.exists():
        top = top.parent
    return out, None, top


def undo_out_dir(out: Path, before: set[str] | None, created_top: Path | None) -> None:
    """After a failed run: remove what it created and nothing else."""
    if before is None:
        if created_top is not None:
            shutil.rmtree(created_top, ignore_errors=True)
        return
    try:
        names = set(os.listdir(out))
    except OSError:
        return
    for name in names - before:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except OSError:
                pass


__all__ = [
    "ACTIVE_STATES",
    "DAMAGED",
    "FINAL_STATES",
    "JobRecord",
    "OutDirError",
    "ResultsError",
    "RunResult",
    "STATES",
    "artifact_path",
    "inside",
    "list_run_ids",
    "list_statuses",
    "load_run",
    "prepare_out_dir",
    "read_json",
    "read_log",
    "read_predictions",
    "read_progress",
    "read_report",
    "read_status",
    "resolve",
    "try_load_run",
    "undo_out_dir",
]
