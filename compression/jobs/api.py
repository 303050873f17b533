"""Background jobs: run recipes in worker processes, with progress, cancel, and nothing lost.

The dashboard and the CLI call the functions below; nothing else touches the queue.

* The job record of record is ``runs/<id>/status.json`` in the workspace, written
  atomically. Huey (https://huey.readthedocs.io) only carries the job id from ``submit``
  to a worker: SQLite (``$COMPRESSION_HOME/queue.db``) by default, Redis when
  ``COMPRESSION_QUEUE=redis://host:6379/0`` so workers on several machines share it.
* A worker is a Huey consumer with ``process`` workers: one forked process per
  concurrent job, restarted by the consumer when it dies. Each process imports
  TensorFlow once (at start) and calls ``compression.engine.pipeline.run_recipe``.
* Progress goes from the engine's callback to ``progress.json`` and ``status.json``,
  at most ~4 writes a second, always on the first event, stage and epoch changes.
* Cancel: a queued job is marked cancelled and revoked; a running one gets a ``cancel``
  file, and the progress callback raises ``Cancelled`` at the next batch.
* Faults: a running record names its worker (host, pid, process start time) and carries
  a heartbeat. Any status read that finds its process gone (same host) or its heartbeat
  stale (other hosts) marks it failed. A job whose worker died after taking it from the
  queue but before starting it is put back in the queue by the next worker's check.

This module never imports TensorFlow (only a worker process does, in ``execute_job``)
and never imports streamlit.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

from compression.errors import Cancelled, RecipeError, UserError
from compression.recipe import Recipe
from compression.store.runs import JobRecord, list_run_ids, list_statuses, read_status
from compression.store.runs import read_log as _read_log
from compression.store.workspace import (
    append_text,
    atomic_write_json,
    atomic_write_text,
    home_dir,
    is_job_id,
    new_job_id,
    now_iso,
    parse_iso,
    read_json,
    run_dir,
)

log = logging.getLogger("compression.jobs")

QUEUE_ENV = "COMPRESSION_QUEUE"  # "sqlite" (default) or a redis:// URL
QUEUE_NAME_ENV = "COMPRESSION_QUEUE_NAME"  # one queue per name on a Redis server
WORKERS_ENV = "COMPRESSION_WORKERS"  # concurrent jobs per worker
EMBEDDED_ENV = "COMPRESSION_EMBEDDED_WORKER"  # "0": ensure_worker never starts one
PRELOAD_ENV = "COMPRESSION_WORKER_PRELOAD"  # "0": import TensorFlow at the first job, not at start
STALE_ENV = "COMPRESSION_HEARTBEAT_TIMEOUT"  # seconds without heartbeat before a remote job is dead
CANCEL_GRACE_ENV = "COMPRESSION_CANCEL_GRACE"  # seconds before a cancel ignored by the engine is forced
RUNNER_ENV = "COMPRESSION_RUNNER"  # module:function run instead of pipeline.run_recipe (tests)

PROGRESS_INTERVAL_S = 0.25  # at most ~4 progress writes a second
HEARTBEAT_S = 5.0  # a running job's heartbeat period
STALE_AFTER_S = 60.0  # default heartbeat timeout for workers on other hosts
CANCEL_GRACE_S = 30.0  # a cancelled job that ignores the flag this long is stopped by force
RECOVER_EVERY_S = 5.0  # the worker's check for dead and lost jobs
LOST_AFTER_S = 10.0  # a queued job missing from the queue this long was lost by a dead worker
MAX_TASKS_PER_PROCESS = 20  # recycle a worker process after this many jobs (bounds leaks)

WORKER_DIED = "the worker running this job stopped unexpectedly (killed or out of memory)"

_HOST = socket.gethostname()


class QueueError(RuntimeError):
    """The queue cannot be reached (e.g. the Redis server is down)."""


class UnknownJob(UserError, KeyError):
    """No job with that id in the workspace."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown job"


# --- configuration -------------------------------------------------------------------------


def queue_url() -> str:
    return os.environ.get(QUEUE_ENV, "").strip() or "sqlite"


def queue_name() -> str:
    return os.environ.get(QUEUE_NAME_ENV, "").strip() or "compression"


def default_workers() -> int:
    """``$COMPRESSION_WORKERS``, else half the cores (1 on a 2-core machine), at most 4."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise UserError(f"{WORKERS_ENV}={raw!r} is not a whole number") from None
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _flag(env: str, default: bool) -> bool:
    raw = os.environ.get(env, "").strip().lower()
    if not raw:
        return default
    return raw not in ("0", "false", "no", "off")


def _seconds(env: str, default: float) -> float:
    try:
        return float(os.environ.get(env, "") or default)
    except ValueError:
        return default


def _stale_after() -> float:
    return _seconds(STALE_ENV, STALE_AFTER_S)


def _cancel_grace() -> float:
    return _seconds(CANCEL_GRACE_ENV, CANCEL_GRACE_S)


# --- the queue (Huey) ------------------------------------------------------------------------

_HUEYS: dict[tuple, Any] = {}
_HUEYS_LOCK = threading.Lock()


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def _make_huey(home: Path, execute: bool = False, preload: bool = False):
    """A Huey instance for this workspace, with the one task registered.

    ``execute`` makes the task run jobs (worker side); on the submit side the task body
    is never called, only its name is serialised.
    """
    url = queue_url()
    name = queue_name()
    if _is_redis(url):
        from huey import RedisHuey

        huey = RedisHuey(name, url=url, results=False)
    elif url in ("sqlite", "sqlite://") or url.startswith("sqlite:///"):
        from huey import SqliteHuey

        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else str(home / "queue.db")
        # strict_fifo: without it SQLite may reuse row ids and run jobs out of order.
        huey = SqliteHuey(name, filename=path, results=False, strict_fifo=True, timeout=30)
    else:
        raise UserError(f"{QUEUE_ENV}={url!r}: use 'sqlite' or a redis://host:port/db URL")

    def run_job(job_id: str) -> None:
        if not execute:  # pragma: no cover - a submit-side instance is never consumed
            raise RuntimeError("this Huey instance only submits jobs")
        execute_job(job_id, home, hard_cancel=True)

    huey.compression_task = huey.task(name="run_job")(run_job)

    if execute:

        @huey.on_startup(name="compression_worker_startup")
        def _startup() -> None:
            _die_with_parent()
            with contextlib.suppress(Exception):
                sys.stdout.reconfigure(line_buffering=True)
                sys.stderr.reconfigure(line_buffering=True)
            if preload:
                t0 = time.monotonic()
                try:
                    _engine()  # imports TensorFlow: ~7 s, once per process
                except Exception as e:  # the job itself will report it
                    log.warning("could not preload the engine: %s", e)
                else:
                    log.info("engine loaded in %.1f s (pid %d)", time.monotonic() - t0, os.getpid())

    return huey


def _client(home: Path):
    """The cached submit-side Huey instance of a workspace."""
    key = (str(home), queue_url(), queue_name())
    with _HUEYS_LOCK:
        huey = _HUEYS.get(key)
        if huey is None:
            huey = _HUEYS[key] = _make_huey(home)
        return huey


def _enqueue(huey, job_id: str) -> None:
    # The Huey task id is the job id, so revoke_by_id and pending() speak of jobs.
    huey.enqueue(huey.compression_task.task_class((job_id,), {}, id=job_id))


def _pending_ids(huey) -> set[str]:
    return {t.id for t in huey.pending()}


# --- locking and status writes -----------------------------------------------------------------


def _lock(folder: Path, timeout: float = 30) -> FileLock:
    return FileLock(str(folder / ".lock"), timeout=timeout)


def _read_raw(folder: Path) -> dict | None:
    data = read_json(folder / "status.json")
    return data if isinstance(data, dict) else None


def _write_raw(folder: Path, data: dict, fsync: bool = False) -> None:
    data = {k: v for k, v in data.items() if k not in ("run_dir", "cancel_requested")}
    atomic_write_json(folder / "status.json", data, fsync=fsync)


def _log_line(folder: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        append_text(folder / "log.txt", f"[{now_iso()}] {text}\n")


def _where(rec: dict) -> str:
    """'during prune (epoch 1/2)' from a record's progress fields, or ''."""
    stage = rec.get("stage")
    if not stage:
        return ""
    epoch, epochs = rec.get("epoch"), rec.get("epochs")
    if epoch and epochs:
        return f" during {stage} (epoch {epoch}/{epochs})"
    return f" during {stage}"


# --- worker liveness ---------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    try:
        return rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


_BOOT_ID = _boot_id()


def _pid_alive(pid: int | None, start: int | None = None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return not os.path.isdir("/proc")  # no /proc: os.kill is all we know
    state, started = stat
    if state in ("Z", "X"):
        return False  # a zombie: dead, not yet reaped
    if start is not None and started != start:
        return False  # the pid was reused by another process
    return True


def _dead_reason(rec: dict) -> str | None:
    """Why a ``running`` record's worker is gone, or None if it may still be alive."""
    if rec.get("state") != "running":
        return None
    if rec.get("host") == _HOST:
        if rec.get("boot_id") and _BOOT_ID and rec["boot_id"] != _BOOT_ID:
            return "the machine running this job restarted"
        if not _pid_alive(rec.get("pid"), rec.get("pid_start")):
            return WORKER_DIED
        return None
    beat = parse_iso(rec.get("heartbeat_at") or rec.get("started_at"))
    timeout = _stale_after()
    if beat is not None and time.time() - beat > timeout:
        return (
            f"the worker on {rec.get('host')} sent no heartbeat for {time.time() - beat:.0f} s "
            "(killed, out of memory, or its machine went down)"
        )
    return None


def _mark_failed(folder: Path, reason: str, pid: int | None = None) -> bool:
    """Mark a running job failed (if it still is, and still by ``pid``). True if it changed."""
    with _lock(folder):
        rec = _read_raw(folder)
        if not rec or rec.get("state") != "running":
            return False
        if pid is not None and rec.get("pid") != pid:
            return False
        error = reason + _where(rec)
        rec.update(state="failed", error=error, finished_at=now_iso(), message=f"failed: {error}")
        _write_raw(folder, rec, fsync=True)
    _log_line(folder, f"FAILED: {error}")
    log.warning("job %s failed: %s", folder.name, error)
    return True


def _checked(rec: JobRecord) -> JobRecord:
    """The record, with a dead worker's ``running`` job turned ``failed``."""
    if rec.state != "running":
        return rec
    reason = _dead_reason(rec.to_status())
    if reason is None:
        return rec
    folder = Path(rec.run_dir)
    _mark_failed(folder, reason, rec.pid)
    return read_status(folder) or rec


# --- the public interface ----------------------------------------------------------------------


def _absolute_paths(recipe: Recipe, base_dir: Path) -> Recipe:
    """Relative dataset/baseline paths made absolute, and checked to exist.

    Like ``python -m compression run``: relative to ``base_dir`` (the recipe file's folder),
    else to the current folder when the file is there instead.
    """

    def fix(value: str, field: str) -> str:
        path = Path(value).expanduser()
        if not path.is_absolute():
            candidate = base_dir / path
            path = candidate if candidate.exists() or not path.exists() else path
        path = path.absolute()
        if not path.exists():
            raise RecipeError(field, f"{path} does not exist")
        return str(path)

    changes: dict[str, Any] = {}
    if recipe.dataset.npz:
        changes["dataset"] = replace(recipe.dataset, npz=fix(recipe.dataset.npz, "dataset.npz"))
    if recipe.baseline.path:
        changes["baseline"] = replace(recipe.baseline, path=fix(recipe.baseline.path, "baseline.path"))
    return recipe.with_(**changes) if changes else recipe


def submit(recipe: Recipe | dict, home: str | os.PathLike | None = None,
           base_dir: str | os.PathLike | None = None) -> str:
    """Queue a recipe; returns the job id at once. The run starts when a worker is free.

    Relative paths in the recipe (``dataset.npz``, ``baseline.path``) are made absolute
    against ``base_dir`` (the CLI passes the recipe file's folder; default: the current
    folder), falling back to the current folder, and must exist. Raises ``RecipeError``
    for a bad recipe, ``QueueError`` when the queue is unreachable (the run folder then
    says ``failed`` with the reason).
    """
    if isinstance(recipe, dict):
        recipe = Recipe.from_dict(recipe)
    recipe = _absolute_paths(recipe, Path(base_dir or os.getcwd()).absolute())
    root = home_dir(home)
    for _ in range(10):
        job_id = new_job_id()
        folder = run_dir(job_id, root)
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 10 collisions of 24 random bits within a second
        raise RuntimeError("could not create a run folder")
    data = recipe.to_dict()
    atomic_write_json(folder / "recipe.json", data, fsync=True)
    record = JobRecord(
        id=job_id, name=recipe.name, kind="compress" if recipe.steps else "baseline", recipe=data,
        state="queued", message="waiting for a worker", created_at=now_iso(),
    )
    _write_raw(folder, record.to_status(), fsync=True)
    _log_line(folder, f"submitted job {job_id} ({record.name}) on {_HOST}")
    try:
        _enqueue(_client(root), job_id)
    except Exception as e:
        reason = f"could not queue the job ({queue_url()}): {type(e).__name__}: {e}".splitlines()[0]
        with _lock(folder):
            rec = _read_raw(folder) or {}
            rec.update(state="failed", error=reason, finished_at=now_iso(), message=reason)
            _write_raw(folder, rec, fsync=True)
        _log_line(folder, f"FAILED: {reason}")
        raise QueueError(reason) from e
    return job_id


def resolve_job_id(job_id: str, home: str | os.PathLike | None = None) -> str:
    """An exact id, or a unique prefix/suffix of one (at least 4 characters)."""
    job_id = (job_id or "").strip()
    if is_job_id(job_id):
        if (run_dir(job_id, home) / "status.json").exists():
            return job_id
        raise UnknownJob(f"no job {job_id} in {home_dir(home)}")
    if len(job_id) >= 4:
        hits = [i for i in list_run_ids(home) if i.startswith(job_id) or i.endswith(job_id)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UnknownJob(f"{job_id!r} matches {len(hits)} jobs ({', '.join(hits[:3])}, ...); give more of the id")
    raise UnknownJob(f"no job {job_id!r} in {home_dir(home)} (list them with: python -m compression jobs)")


def get_job(job_id: str, home: str | os.PathLike | None = None) -> JobRecord:
    """The job record. Raises ``UnknownJob`` (a ``KeyError``) for an unknown id."""
    job_id = resolve_job_id(job_id, home)
    rec = read_status(job_id, home)
    if rec is None:
        raise UnknownJob(f"no job {job_id} in {home_dir(home)}")
    return _checked(rec)


def list_jobs(home: str | os.PathLike | None = None) -> list[JobRecord]:
    """Every job in the workspace, newest first."""
    return [_checked(r) for r in list_statuses(home)]


def cancel(job_id: str, home: str | os.PathLike | None = None) -> JobRecord:
    """Cancel a job. Queued: removed from the queue, ``cancelled`` at once. Running: stops at
    the next progress event (within a second or two while training) and ends ``cancelled``.
    Finished jobs are left as they are."""
    job_id = resolve_job_id(job_id, home)
    root = home_dir(home)
    folder = run_dir(job_id, root)
    revoke = False
    with _lock(folder):
        rec = _read_raw(folder) or {}
        if rec.get("state") == "queued":
            rec.update(state="cancelled", finished_at=now_iso(), message="cancelled before it started")
            _write_raw(folder, rec, fsync=True)
            revoke = True
            _log_line(folder, "cancelled before it started")
        elif rec.get("state") == "running" and not (folder / "cancel").exists():
            atomic_write_text(folder / "cancel", now_iso() + "\n")
            _log_line(folder, "cancel requested")
    if revoke:  # best effort: the worker skips cancelled records anyway
        with contextlib.suppress(Exception):
            _client(root).revoke_by_id(job_id, revoke_once=True)
    return get_job(job_id, root)


def read_log(job_id: str, home: str | os.PathLike | None = None, tail_chars: int | None = None) -> str:
    return _read_log(resolve_job_id(job_id, home), home, tail_chars=tail_chars)


def wait(job_id: str, home: str | os.PathLike | None = None, timeout: float | None = None,
         poll_s: float = 0.5) -> JobRecord:
    """Block until the job is finished (or ``timeout`` seconds pass); returns the record."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rec = get_job(job_id, home)
        if rec.finished or (deadline is not None and time.monotonic() >= deadline):
            return rec
        time.sleep(poll_s)


# --- running a job (worker side) -----------------------------------------------------------------


class _JobRun:
    """State of one job inside a worker process: status writes, progress, heartbeat."""

    def __init__(self, folder: Path, rec: dict, hard_cancel: bool):
        self.folder = folder
        self.rec = rec
        self.hard_cancel = hard_cancel
        self.mutex = threading.Lock()  # status writes from the job and the heartbeat thread
        self.last_event: dict | None = None
        self.last_written: dict | None = None
        self.last_write_t = 0.0
        self.last_key: tuple | None = None
        self.stop = threading.Event()
        self.write_errors = 0
        self.beat = threading.Thread(target=self._heartbeat, name="job-heartbeat", daemon=True)

    # status.json ----------------------------------------------------------------------------
    def save(self, fsync: bool = False, **changes) -> None:
        with self.mutex:
            self.rec.update(changes)
            self.rec["heartbeat_at"] = now_iso()
            try:
                with _lock(self.folder):
                    _write_raw(self.folder, self.rec, fsync=fsync)
            except OSError as e:  # a full disk must not kill the run; say it once
                self.write_errors += 1
                if self.write_errors == 1:
                    log.warning("job %s: cannot write its status: %s", self.folder.name, e)

    # progress ---------------------------------------------------------------------------------
    def progress(self, event: dict) -> None:
        """The engine's progress callback."""
        if (self.folder / "cancel").exists():
            raise Cancelled("cancelled by user")
        self.last_event = event
        now = time.monotonic()
        key = (event.get("phase"), event.get("stage"), event.get("stage_index"), event.get("epoch"))
        fraction = event.get("fraction")
        if (
            self.last_key is None
            or key != self.last_key
            or (isinstance(fraction, (int, float)) and fraction >= 1)
            or now - self.last_write_t >= PROGRESS_INTERVAL_S
        ):
            if self.last_key is None or key[:3] != self.last_key[:3]:
                index, count = event.get("stage_index"), event.get("stage_count")
                of = f" (stage {index + 1} of {count})" if isinstance(index, int) and count and index < count else ""
                _log_line(self.folder, f"{event.get('stage')}: {event.get('phase') or 'working'}{of}")
            self.last_key = key
            self._write_progress(event)
            self.last_write_t = now

    def flush(self) -> None:
        """Write the last event if throttling skipped it."""
        if self.last_event is not None and self.last_event is not self.last_written:
            self._write_progress(self.last_event)

    def _write_progress(self, event: dict) -> None:
        self.last_written = event
        with contextlib.suppress(OSError, TypeError, ValueError):
            atomic_write_json(self.folder / "progress.json", dict(event, time=now_iso()))
        fraction = event.get("fraction")
        changes = {k: event.get(k) for k in ("phase", "stage", "stage_index", "stage_count", "epoch", "epochs")}
        if isinstance(fraction, (int, float)):
            changes["progress"] = round(min(1.0, max(0.0, float(fraction))), 4)
        changes["message"] = str(event.get("message") or self.rec.get("message") or "")
        self.save(**changes)

    # heartbeat and forced cancel -----------------------------------------------------------------
    def _heartbeat(self) -> None:
        last = time.monotonic()
        while not self.stop.wait(1.0):
            if time.monotonic() - last >= HEARTBEAT_S:
                self.save()
                last = time.monotonic()
            if self.hard_cancel:
                self._check_stuck_cancel()

    def _check_stuck_cancel(self) -> None:
        try:
            asked = (self.folder / "cancel").stat().st_mtime
        except FileNotFoundError:
            return
        if time.time() - asked < _cancel_grace():
            return
        # The engine has not come back to a progress callback for CANCEL_GRACE_S seconds
        # (e.g. a long conversion): end the process; the consumer starts a fresh one.
        with self.mutex:
            if self.stop.is_set() or self.rec.get("state") != "running":
                return  # the job ended meanwhile
            msg = f"cancelled by user{_where(self.rec)}; its worker process was stopped to end it"
            self.rec.update(state="cancelled", finished_at=now_iso(), message=msg, heartbeat_at=now_iso())
            with contextlib.suppress(Exception), _lock(self.folder):
                _write_raw(self.folder, self.rec, fsync=True)
            _log_line(self.folder, f"CANCELLED: {msg}")
            os._exit(75)


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr (fds 1 and 2, C++ code included) to ``path``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)


def _one_line(e: BaseException) -> str:
    if isinstance(e, UserError):
        text = str(e)
    else:
        first = (str(e).strip().splitlines() or [""])[0]
        text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _engine() -> Callable[[Recipe, Path, Callable[[dict], None]], dict]:
    """The function a worker runs: ``compression.engine.pipeline.run_recipe``.

    ``COMPRESSION_RUNNER=module:function`` substitutes another function with the same
    signature (tests use it to exercise faults the real engine cannot be made to show).
    """
    spec = os.environ.get(RUNNER_ENV, "").strip()
    if spec:
        import importlib

        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name or "run_recipe")
    from compression.engine.pipeline import run_recipe  # TensorFlow: only ever imported in a worker process

    return run_recipe


def execute_job(job_id: str, home: str | os.PathLike | None = None,
                runner: Callable[[Recipe, Path, Callable[[dict], None]], dict] | None = None,
                capture_output: bool = True, hard_cancel: bool = False) -> str | None:
    """Run one queued job in this process; returns its final state (None if skipped).

    Called by a worker for each job id it takes from the queue. Claims the record first
    (under the run folder's lock), so a job that was cancelled, or already taken by
    another worker, is skipped.
    """
    root = home_dir(home)
    folder = run_dir(job_id, root)
    if not folder.is_dir():
        log.warning("job %s: no run folder in %s; skipped", job_id, root)
        return None
    stat = _proc_stat(os.getpid())
    with _lock(folder):
        rec = _read_raw(folder)
        if not rec or rec.get("state") != "queued":
            log.info("job %s is %s; skipped", job_id, (rec or {}).get("state"))
            return None
        rec.update(
            state="running", started_at=now_iso(), host=_HOST, pid=os.getpid(),
            pid_start=stat[1] if stat else None, boot_id=_BOOT_ID, message="starting",
            heartbeat_at=now_iso(), error=None,
        )
        _write_raw(folder, rec, fsync=True)
    _log_line(folder, f"started on {_HOST} (pid {os.getpid()})")
    job = _JobRun(folder, rec, hard_cancel)
    job.beat.start()
    t0 = time.monotonic()
    state: str
    try:
        with _output_to(folder / "log.txt") if capture_output else contextlib.nullcontext():
            try:
                recipe = Recipe.from_dict(read_json(folder / "recipe.json"))
                (runner or _engine())(recipe, folder, job.progress)
            except Cancelled:
                state = "cancelled"
                job.flush()
                msg = f"cancelled by user{_where(job.rec)}"
                job.stop.set()
                job.save(fsync=True, state=state, finished_at=now_iso(), message=msg)
                _log_line(folder, f"CANCELLED: {msg} after {time.monotonic() - t0:.1f} s")
            except Exception as e:
                state = "failed"
                job.flush()
                error = _one_line(e)
                with contextlib.suppress(OSError):
                    append_text(folder / "log.txt", traceback.format_exc())
                job.stop.set()
                job.save(fsync=True, state=state, finished_at=now_iso(), error=error, message=f"failed: {error}")
                _log_line(folder, f"FAILED: {error}")
            except BaseException:  # SIGTERM/SIGINT from the consumer shutting down
                job.flush()
                error = f"the worker was shut down while this job ran{_where(job.rec)}; submit it again"
                job.stop.set()
                job.save(fsync=True, state="failed", finished_at=now_iso(), error=error, message=f"failed: {error}")
                _log_line(folder, f"FAILED: {error}")
                raise
            else:
                state = "succeeded"
                job.flush()
                wall = time.monotonic() - t0
                job.stop.set()
                job.save(fsync=True, state=state, finished_at=now_iso(), progress=1.0,
                         message=f"finished in {wall:.1f} s")
                _log_line(folder, f"SUCCEEDED in {wall:.1f} s")
    finally:
        job.stop.set()
        job.beat.join(timeout=5)
        _release_memory()
    return state


def _release_memory() -> None:
    if "tf_keras" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["tf_keras"].backend.clear_session()
    gc.collect()


# --- the worker ----------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this (forked) worker process when the consumer dies."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
        os._exit(1)


def recover(home: str | os.PathLike | None = None, huey=None, missing: dict | None = None,
            lost_after_s: float = LOST_AFTER_S) -> dict:
    """One pass of the worker's fault check; returns what it changed.

    * ``running`` jobs whose worker is gone are marked ``failed``;
    * ``queued`` jobs that are not in the queue for ``lost_after_s`` seconds across two
      passes (their worker died between taking them and starting them, or the submitter
      died before queueing them) are put back in the queue.

    ``missing`` carries first-seen times between passes (the worker keeps one dict).
    """
    root = home_dir(home)
    missing = {} if missing is None else missing
    failed, requeued = [], []
    queued = []
    for rec in list_statuses(root):
        if rec.state == "running":
            if _checked(rec).state == "failed":
                failed.append(rec.id)
        elif rec.state == "queued":
            queued.append(rec.id)
    if queued:
        huey = huey or _client(root)
        pending = _pending_ids(huey)
        now = time.monotonic()
        for job_id in queued:
            if job_id in pending:
                missing.pop(job_id, None)
                continue
            first = missing.setdefault(job_id, now)
            if now - first >= lost_after_s:
                folder = run_dir(job_id, root)
                rec = _read_raw(folder) or {}
                if rec.get("state") == "queued":
                    _enqueue(huey, job_id)
                    _log_line(folder, "re-queued: it was no longer in the queue (its worker stopped before starting it)")
                    log.warning("job %s re-queued (lost from the queue)", job_id)
                    requeued.append(job_id)
                missing.pop(job_id, None)
    for job_id in list(missing):
        if job_id not in queued:
            missing.pop(job_id)
    return {"failed": failed, "requeued": requeued}


def _make_consumer(huey, root: Path, workers: int):
    from huey.consumer import Consumer, Scheduler

    class JobScheduler(Scheduler):
        def initialize(self):
            _die_with_parent()  # an orphaned scheduler would poll forever
            super().initialize()

    class JobConsumer(Consumer):
        """Huey's consumer plus our fault checks, run in its main loop (no extra threads,
        so forking a replacement worker process never copies a held lock)."""

        scheduler_class = JobScheduler

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._missing: dict[str, float] = {}
            self._next_check = 0.0
            self._checker = None

        def loop(self, health_check_ts=None):
            ts = super().loop(health_check_ts)
            if time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + RECOVER_EVERY_S
                try:
                    if self._checker is None:
                        self._checker = _make_huey(root)
                    recover(root, self._checker, self._missing)
                except Exception:
                    log.exception("fault check failed")
                finally:
                    if self._checker is not None:
                        self._checker.storage.close()  # never fork with an open connection
            return ts

        def check_worker_health(self):
            for _, proc in self.worker_threads:
                if not proc.is_alive() and proc.exitcode not in (0, None):
                    self._fail_jobs_of(proc.pid, proc.exitcode)
            return super().check_worker_health()

        def _fail_jobs_of(self, pid: int, exitcode: int) -> None:
            if exitcode < 0:
                sig = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
                how = f"was killed by {sig}" + (" (out of memory, or killed by hand)" if sig == "SIGKILL" else "")
            else:
                how = f"exited with code {exitcode}"
            reason = f"the worker process running this job (pid {pid}) {how}"
            for rec in list_statuses(root):
                if rec.state == "running" and rec.host == _HOST and rec.pid == pid:
                    _mark_failed(Path(rec.run_dir), reason, pid)

    return JobConsumer(
        huey, workers=workers, worker_type="process", periodic=False,
        initial_delay=0.1, backoff=1.15, max_delay=0.5,  # an idle worker polls SQLite twice a second
        check_worker_health=True, health_check_interval=1, max_tasks=MAX_TASKS_PER_PROCESS,
    )


def _rotate(path: Path, max_bytes: int = 5_000_000) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))


def run_worker(home: str | os.PathLike | None = None, workers: int | None = None,
               preload: bool | None = None) -> int:
    """Run a worker in the foreground until SIGINT (graceful: running jobs finish) or
    SIGTERM (running jobs stop and are marked failed). Returns an exit code."""
    root = home_dir(home)
    workers = workers or default_workers()
    preload = _flag(PRELOAD_ENV, True) if preload is None else preload
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(processName)s %(name)s %(levelname)s: %(message)s")
    lock = FileLock(str(root / "worker.lock"))
    try:
        lock.acquire(timeout=5)
        holds_lock = True
    except Timeout:
        holds_lock = False
        log.info("another worker already serves %s; this one runs alongside it", root)
    info_path = root / "worker.json"
    try:
        if holds_lock:
            atomic_write_json(info_path, {
                "pid": os.getpid(), "host": _HOST, "started_at": now_iso(), "workers": workers,
                "queue": queue_url(), "home": str(root),
            })
        huey = _make_huey(root, execute=True, preload=preload)
        consumer = _make_consumer(huey, root, workers)
        log.info("worker for %s: %d process(es), queue %s", root, workers, queue_url())
        consumer.run()
    finally:
        if holds_lock:
            with contextlib.suppress(OSError):
                info_path.unlink()
            lock.release()
    return 0


def worker_running(home: str | os.PathLike | None = None) -> bool:
    """Whether a worker holds this workspace's worker lock (on this machine)."""
    lock = FileLock(str(home_dir(home) / "worker.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def worker_info(home: str | os.PathLike | None = None) -> dict:
    """{"running": bool, plus pid, host, started_at, workers, queue when one runs}."""
    root = home_dir(home)
    running = worker_running(root)
    info = read_json(root / "worker.json", {}) if running else {}
    return {"running": running, **(info or {})}


def ensure_worker(home: str | os.PathLike | None = None, timeout: float = 20) -> bool:
    """Start the embedded worker unless one runs; True if this call started it.

    Guarded by a lock file so that two app processes or tabs never start two. The worker
    runs detached (its own session), logs to ``$COMPRESSION_HOME/worker.log`` and keeps
    running after the dashboard stops. ``COMPRESSION_EMBEDDED_WORKER=0`` turns this off
    (workers started by hand, e.g. on other machines, serve the queue).
    """
    if not _flag(EMBEDDED_ENV, True):
        return False
    root = home_dir(home)
    with FileLock(str(root / "worker-start.lock"), timeout=60):
        if worker_running(root):
            return False
        logfile = root / "worker.log"
        _rotate(logfile)
        env = dict(os.environ)
        env["COMPRESSION_HOME"] = str(root)
        package_parent = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        with open(logfile, "ab") as out:
            proc = _popen([sys.executable, "-m", "compression", "worker", "--home", str(root)],
                          out, env, root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker_running(root):
                return True
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited at start (code {proc.returncode}); see {logfile}")
            time.sleep(0.05)
        raise RuntimeError(f"the worker did not start within {timeout:.0f} s; see {logfile}")


def _popen(cmd, out, env, cwd):
    import subprocess

    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=str(cwd), start_new_session=True, close_fds=True)


def stop_worker(home: str | os.PathLike | None = None, timeout: float = 30) -> bool:
    """Stop this workspace's worker (SIGTERM, then SIGKILL after ``timeout``). True if one ran."""
    root = home_dir(home)
    if not worker_running(root):
        return False
    pid = (read_json(root / "worker.json", {}) or {}).get("pid")
    if not pid:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker_running(root):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    return True


__all__ = [
    "JobRecord",
    "QueueError",
    "UnknownJob",
    "cancel",
    "default_workers",
    "ensure_worker",
    "execute_job",
    "get_job",
    "list_jobs",
    "queue_url",
    "read_log",
    "recover",
    "resolve_job_id",
    "run_worker",
    "stop_worker",
    "submit",
    "wait",
    "worker_info",
    "worker_running",
]
