"""The public interface of background jobs: submit, list, get, cancel, remove, logs, wait.

The dashboard and the CLI call these; nothing else touches the queue. The package is laid
out by concern (no module imports one below it in this list):

* ``api``     this file;
* ``worker``  the consumer, the fault check (``recover``), starting and stopping workers;
* ``execute`` running one job in a worker process: progress, heartbeat, cancel;
* ``records`` status.json under lock, liveness, failing dead jobs, forcing overdue cancels;
* ``queue``   the only Huey import.

Nothing here imports TensorFlow (only a worker process does, when it runs a job) or
streamlit. See docs/ARCHITECTURE.md, "Job records".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from compression.errors import UserError
from compression.jobs import queue, records
from compression.jobs.records import HOST, log_line
from compression.recipe import Recipe
from compression.recipe.layers import check_layer_names
from compression.jobs.records import JobRecord, list_statuses, read_status
from compression.store.runs import list_run_ids
from compression.studies.record import TAGS_FILE
from compression.store.runs import read_log as _read_log
from compression.store.workspace import (
    atomic_write_json,
    atomic_write_text,
    home_dir,
    is_job_id,
    new_job_id,
    now_iso,
    resolve_recipe_paths,
    run_dir,
    runs_dir,
)


class UnknownJob(UserError, KeyError):
    """No job with that id in the workspace."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown job"


class JobBusy(UserError):
    """The job is still queued or running (e.g. it cannot be removed)."""


def safe_name(text: str) -> str:
    """A name for a one-line log: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _new_run_folder(root: Path, files: dict[str, dict]) -> tuple[str, Path]:
    """A new run folder holding ``files``, appearing whole: written in a hidden folder under
    ``runs/`` and renamed into place; on any error nothing is left behind."""
    runs = runs_dir(root)
    for _ in range(10):
        job_id = new_job_id()
        tmp = runs / f".new-{job_id}"
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        try:
            for name, data in files.items():
                atomic_write_json(tmp / name, dict(data, id=job_id) if name == "status.json" else data, fsync=True)
            os.rename(tmp, runs / job_id)  # fails if that id exists: try another
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, (FileExistsError, IsADirectoryError)) or getattr(e, "errno", None) == 39:
                continue
            raise
        return job_id, runs / job_id
    raise RuntimeError("could not create a run folder")  # pragma: no cover - 10 id collisions


def submit(recipe: Recipe | dict, home: str | os.PathLike | None = None,
           base_dir: str | os.PathLike | None = None, studies: list[str] | None = None) -> str:
    """Queue a recipe; returns the job id at once. The run starts when a worker is free.

    Relative paths in the recipe (``dataset.npz``, ``baseline.path``) are made absolute
    against ``base_dir`` (the CLI passes the recipe file's folder; default: the current
    folder), falling back to the current folder, and must exist. Raises ``RecipeError``
    for a bad recipe, ``OSError`` when the workspace cannot be written (nothing is left
    half-written), ``QueueError`` when the queue is unreachable (the run folder then says
    ``failed`` with the reason). ``studies``: the ids of the studies the run belongs to (its
    ``studies.json``).
    """
    if isinstance(recipe, dict):
        recipe = Recipe.from_dict(recipe)
    recipe = resolve_recipe_paths(recipe, base_dir)
    check_layer_names(recipe)  # a layer the baseline lacks: refused now, not after the baseline trained
    root = home_dir(home)
    data = recipe.to_dict()
    record = JobRecord(
        id="", name=recipe.name, kind="compress" if recipe.steps else "baseline", recipe=data,
        state="queued", message="waiting for a worker", created_at=now_iso(),
    )
    files = {"recipe.json": data, "status.json": record.to_status()}
    if studies:
        files[TAGS_FILE] = sorted(set(studies))
    job_id, folder = _new_run_folder(root, files)
    log_line(folder, f"submitted job {job_id} ({safe_name(record.name)}) on {HOST}")
    try:
        queue.enqueue(queue.client(root), job_id)
    except Exception as e:
        reason = f"could not queue the job ({queue.queue_url()}): {type(e).__name__}: {e}".splitlines()[0]
        with contextlib.suppress(OSError, records.LockTimeout):
            records.update_final(folder, dict(state="failed", error=reason, finished_at=now_iso(), message=reason),
                                 only_if_running=False, attempts=2)
        log_line(folder, f"FAILED: {reason}")
        raise queue.QueueError(reason) from e
    return job_id


def resolve_job_id(job_id: str, home: str | os.PathLike | None = None) -> str:
    """An exact id, or a unique prefix/suffix of one (at least 4 characters)."""
    job_id = (job_id or "").strip()
    if is_job_id(job_id):
        if run_dir(job_id, home).is_dir():
            return job_id
        raise UnknownJob(f"no job {job_id} in {home_dir(home, create=False)}")
    if len(job_id) >= 4:
        hits = [i for i in list_run_ids(home) if i.startswith(job_id) or i.endswith(job_id)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UnknownJob(f"{job_id!r} matches {len(hits)} jobs ({', '.join(hits[:3])}, ...); give more of the id")
    raise UnknownJob(f"no job {safe_name(job_id)!r} in {home_dir(home, create=False)} (list them with: "
                     "python -m compression jobs)")


def get_job(job_id: str, home: str | os.PathLike | None = None, write: bool = True) -> JobRecord:
    """The job record (state ``damaged`` when its status.json is unreadable).

    ``write=False`` (a read-only viewer): a dead job is reported failed but its record is not
    rewritten, and an overdue cancel kills nothing. Raises ``UnknownJob`` (a ``KeyError``) for
    an unknown id."""
    job_id = resolve_job_id(job_id, home)
    rec = read_status(job_id, home)
    if rec is None:
        raise UnknownJob(f"no job {job_id} in {home_dir(home, create=False)}")
    return records.checked(rec, write=write)


def list_jobs(home: str | os.PathLike | None = None, write: bool = True) -> list[JobRecord]:
    """Every readable job in the workspace, newest first (damaged records: ``list_damaged``).
    Creates nothing; ``write=False`` as for ``get_job``."""
    return [records.checked(r, write=write) for r in list_statuses(home)]


def list_damaged(home: str | os.PathLike | None = None) -> list[JobRecord]:
    """Run folders whose status.json is missing or unreadable, as records with state
    ``damaged`` and the reason in ``error``."""
    return list_statuses(home, damaged=True)


def remove(job_id: str, home: str | os.PathLike | None = None) -> str:
    """Delete a finished or damaged job's run folder; returns its id.

    Raises ``JobBusy`` for a queued or running job (cancel it first)."""
    job_id = resolve_job_id(job_id, home)
    folder = run_dir(job_id, home)
    rec = read_status(folder)
    if rec is not None and rec.active:
        rec = records.checked(rec)
        if rec.active:
            raise JobBusy(f"job {job_id} is {rec.state}; cancel it first (python -m compression cancel {job_id})")
    # rename first, so that no reader sees a half-deleted folder
    trash = runs_dir(home) / f".removed-{job_id}"
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return job_id


def cancel(job_id: str, home: str | os.PathLike | None = None, wait_s: float | None = None) -> JobRecord:
    """Cancel a job. Queued: removed from the queue, ``cancelled`` at once. Running: stops at
    the next progress event (within a second or two while training); one that has not
    stopped after ``$COMPRESSION_CANCEL_GRACE`` seconds (default 30) is ended by force by
    the next status read (its process killed, the record ``cancelled``). Finished and
    damaged jobs are left as they are.

    ``wait_s``: block up to that long for the job to end (the grace period applies).
    """
    job_id = resolve_job_id(job_id, home)
    root = home_dir(home)
    folder = run_dir(job_id, root)
    revoke = False
    with records.lock(folder):
        rec = records.read_raw(folder) or {}
        if rec.get("state") == "queued":
            rec.update(state="cancelled", finished_at=now_iso(), message="cancelled before it started")
            records.write_raw(folder, rec, fsync=True)
            revoke = True
            log_line(folder, "cancelled before it started")
        elif rec.get("state") == "running" and not (folder / "cancel").exists():
            atomic_write_text(folder / "cancel", now_iso() + "\n")
            log_line(folder, "cancel requested")
    if revoke:  # best effort: the worker skips cancelled records anyway
        with contextlib.suppress(Exception):
            queue.revoke(queue.client(root), job_id)
    if wait_s:
        return wait(job_id, root, timeout=wait_s, poll_s=0.2)
    return get_job(job_id, root)


def read_log(job_id: str, home: str | os.PathLike | None = None, tail_chars: int | None = None) -> str:
    return _read_log(resolve_job_id(job_id, home), home, tail_chars=tail_chars)


def wait(job_id: str, home: str | os.PathLike | None = None, timeout: float | None = None,
         poll_s: float = 0.5) -> JobRecord:
    """Block until the job is finished (or ``timeout`` seconds pass); returns the record."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rec = get_job(job_id, home)
        if rec.finished or rec.is_damaged or (deadline is not None and time.monotonic() >= deadline):
            return rec
        time.sleep(poll_s)
