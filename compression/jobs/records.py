"""Job records: ``status.json`` read and written under the run folder's lock, and the
liveness rules that turn a ``running`` record whose worker is gone into ``failed``.

* A running record names its worker (host, pid, process start time, boot id) and carries
  a heartbeat. While it runs the job, the worker process also holds an ``flock`` on the
  run folder's ``.running`` file.
* Same host: the job is dead when its process is gone (or the pid was reused), or when the
  process lives on but no longer holds ``.running`` (it went on without recording how the
  job ended, e.g. its last status write hit a full disk). Other hosts: when the heartbeat
  is older than ``$COMPRESSION_HEARTBEAT_TIMEOUT`` seconds.
* A running job with a cancel older than ``$COMPRESSION_CANCEL_GRACE`` seconds is ended by
  whoever reads it: its process is killed (same host) and it is marked ``cancelled``.
* Readers never raise because of what they find: a record they cannot update on disk
  (read-only or full disk) is returned updated in memory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import time
from pathlib import Path

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from compression.store.runs import RunRef, list_run_ids, resolve
from compression.store.workspace import json_problem as _json_and_problem
from compression.store.workspace import (
    LockTimeout,
    append_text,
    atomic_write_json,
    locked,
    now_iso,
    parse_iso,
    try_flock,
)

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")
DAMAGED = "damaged"  # a run folder whose status.json is missing or unreadable (not in STATES)

# --- the record ----------------------------------------------------------------------------------


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


def read_status(run: RunRef, home: RunRef | None = None) -> JobRecord | None:
    """The job record as stored, without any liveness check.

    None if the folder does not exist; a record with state ``damaged`` (and the reason
    in ``error``) when ``status.json`` is missing, not JSON, or not a job record.
    """
    folder = resolve(run, home)
    data, problem = _json_and_problem(folder / "status.json")
    if problem is None:
        problem = _record_problem(data, folder)
    if problem is not None:
        if not folder.is_dir():
            return None
        return JobRecord.damaged(folder, problem)
    rec = JobRecord.from_dict(data, folder)
    rec.cancel_requested = rec.active and (folder / "cancel").exists()
    return rec


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


log = logging.getLogger("compression.jobs")

STALE_ENV = "COMPRESSION_HEARTBEAT_TIMEOUT"  # seconds without heartbeat before a remote job is dead
CANCEL_GRACE_ENV = "COMPRESSION_CANCEL_GRACE"  # seconds before a cancel ignored by the engine is forced
STALE_AFTER_S = 60.0
CANCEL_GRACE_S = 30.0
FORCE_MARGIN_S = 2.0  # readers force an overdue cancel this long after the job's own deadline
FINAL_WRITE_ATTEMPTS = 4  # a terminal state is written this many times before giving up
FINAL_WRITE_BACKOFF_S = 0.25  # doubled after each failed attempt

WORKER_DIED = "the worker running this job stopped unexpectedly (killed or out of memory)"
LOST_END = ("its worker went on without recording how this job ended (its last status write failed: "
            "disk full or read-only?)")

HOST = socket.gethostname()
RUNNING_FILE = ".running"  # flock'd by the process running the job


def seconds_env(env: str, default: float) -> float:
    try:
        return float(os.environ.get(env, "") or default)
    except ValueError:
        return default


def stale_after_s() -> float:
    return seconds_env(STALE_ENV, STALE_AFTER_S)


def cancel_grace_s() -> float:
    return seconds_env(CANCEL_GRACE_ENV, CANCEL_GRACE_S)


# --- raw status files --------------------------------------------------------------------------


def lock(folder: Path, timeout_s: float = 30):
    """The run folder's lock; raises FileNotFoundError if the folder is gone (never recreates it)."""
    return locked(folder / ".lock", timeout_s)


def read_raw(folder: Path) -> dict | None:
    data, problem = _json_and_problem(folder / "status.json")
    return data if problem is None and isinstance(data, dict) else None


def write_raw(folder: Path, data: dict, fsync: bool = False) -> None:
    data = {k: v for k, v in data.items() if k not in ("run_dir", "cancel_requested")}
    atomic_write_json(folder / "status.json", data, fsync=fsync)


def log_line(folder: Path, text: str) -> None:
    """A timestamped line in the run's log; nothing if the folder is gone or the disk full."""
    with contextlib.suppress(OSError):
        append_text(folder / "log.txt", f"[{now_iso()}] {text}\n")


def where(rec: dict) -> str:
    """' during prune (epoch 1/2)' from a record's progress fields, or ''."""
    stage = rec.get("stage")
    if not stage:
        return ""
    epoch, epochs = rec.get("epoch"), rec.get("epochs")
    if epoch and epochs:
        return f" during {stage} (epoch {epoch}/{epochs})"
    return f" during {stage}"


def folder_gone(e: BaseException) -> bool:
    return isinstance(e, FileNotFoundError) or getattr(e, "errno", None) == errno.ENOENT


def update_final(folder: Path, changes: dict, only_if_running: bool = True,
                 attempts: int = FINAL_WRITE_ATTEMPTS, backoff_s: float = FINAL_WRITE_BACKOFF_S,
                 base: dict | None = None) -> dict | None:
    """Write a terminal state into status.json, retrying a failing write a few times.

    Under the folder lock: reads the record (``base`` if it cannot be read), applies
    ``changes`` unless ``only_if_running`` and the record is no longer running, writes it
    with fsync. Returns the record written, or None if it was left alone. Raises the last
    OSError when every attempt failed, at once when the folder is gone.
    """
    delay = backoff_s
    for attempt in range(attempts):
        try:
            with lock(folder):
                rec = read_raw(folder) or (dict(base) if base else None)
                if rec is None or (only_if_running and rec.get("state") != "running"):
                    return None
                rec.update(changes)
                write_raw(folder, rec, fsync=True)
                return rec
        except (OSError, LockTimeout) as e:
            if folder_gone(e) and not folder.is_dir():
                raise FileNotFoundError(errno.ENOENT, "the run folder was deleted", str(folder)) from None
            if attempt == attempts - 1:
                raise
            log.warning("job %s: status write failed (%s); retrying in %.2f s", folder.name, e, delay)
            time.sleep(delay)
            delay *= 2
    return None  # pragma: no cover


# --- liveness ---------------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int] | None:
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


BOOT_ID = _boot_id()


def pid_alive(pid: int | None, start: int | None = None) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = proc_stat(pid)
    if stat is None:
        return not os.path.isdir("/proc")  # no /proc: os.kill is all we know
    state, started = stat
    if state in ("Z", "X"):
        return False  # a zombie: dead, not yet reaped
    if start is not None and started != start:
        return False  # the pid was reused by another process
    return True


def running_lock_held(folder: Path) -> bool:
    """Whether some process holds the run folder's ``.running`` lock (i.e. runs the job)."""
    try:
        fd = try_flock(folder / RUNNING_FILE, create=False)
    except OSError:
        return False  # no such file: no process ever claimed it this way, or the folder is gone
    if fd is None:
        return True
    os.close(fd)
    return False


def dead_reason(rec: dict, folder: Path) -> str | None:
    """Why a ``running`` record's job is no longer running, or None if it may still be."""
    if rec.get("state") != "running":
        return None
    if rec.get("host") == HOST:
        if rec.get("boot_id") and BOOT_ID and rec["boot_id"] != BOOT_ID:
            return "the machine running this job restarted"
        if not pid_alive(rec.get("pid"), rec.get("pid_start")):
            return WORKER_DIED
        if not running_lock_held(folder):
            return LOST_END
        return None
    beat = parse_iso(rec.get("heartbeat_at") or rec.get("started_at"))
    timeout = stale_after_s()
    if beat is not None and time.time() - beat > timeout:
        return (
            f"the worker on {rec.get('host')} sent no heartbeat for {time.time() - beat:.0f} s "
            "(killed, out of memory, or its machine went down)"
        )
    return None


def mark_failed(folder: Path, reason: str, pid: int | None = None, base: dict | None = None) -> dict | None:
    """Mark a running job failed (if it still is, and still by ``pid``).

    Returns the failed record (in memory when the disk refuses the write), or None if the
    record no longer needed it.
    """
    rec = read_raw(folder) or (dict(base) if base else None)
    if not rec or rec.get("state") != "running" or (pid is not None and rec.get("pid") != pid):
        return None
    if reason == LOST_END and running_lock_held(folder):
        return None
    error = reason + where(rec)
    changes = dict(state="failed", error=error, finished_at=now_iso(), message=f"failed: {error}")

    try:
        written = update_final(folder, changes, attempts=2, backoff_s=0.05, base=base)
    except (OSError, LockTimeout) as e:
        log.warning("job %s failed (%s) but its record cannot be written: %s", folder.name, error, e)
        return dict(rec, **changes)
    if written is None:
        return None
    log_line(folder, f"FAILED: {error}")
    log.warning("job %s failed: %s", folder.name, error)
    return written


def force_cancel(folder: Path, rec: JobRecord, grace_s: float | None = None) -> dict | None:
    """End a running job whose cancel has waited longer than the grace period (plus
    ``FORCE_MARGIN_S``, so that a job's own process gets the first chance to end itself).

    Marks it cancelled, then kills its process (same host, worker-run jobs only; the job
    never overwrites a state someone else ended). Returns the new record, or None when
    the time has not come yet.
    """
    grace_s = cancel_grace_s() if grace_s is None else grace_s
    try:
        asked = (folder / "cancel").stat().st_mtime
    except OSError:
        return None
    if time.time() - asked < grace_s + FORCE_MARGIN_S:
        return None
    raw = read_raw(folder) or rec.to_status()
    if raw.get("state") != "running":
        return None
    killable = (raw.get("host") == HOST and raw.get("killable") and raw.get("pid") != os.getpid()
                and pid_alive(raw.get("pid"), raw.get("pid_start")))
    how = "its worker process was killed" if killable else "it was given up on"
    msg = f"cancelled by user{where(raw)}; it did not stop within {grace_s:.0f} s, so {how}"
    changes = dict(state="cancelled", finished_at=now_iso(), message=msg)
    try:
        written = update_final(folder, changes, attempts=2, backoff_s=0.05, base=raw)
    except (OSError, LockTimeout) as e:
        log.warning("job %s cancelled but its record cannot be written: %s", folder.name, e)
        written = dict(raw, **changes)
    if written is None:
        return None  # it ended meanwhile
    if killable:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(raw["pid"], signal.SIGKILL)
    log_line(folder, f"CANCELLED: {msg}")
    return written


def checked(rec: JobRecord, write: bool = True) -> JobRecord:
    """The record, with a dead worker's ``running`` job turned ``failed`` and an overdue
    cancel forced. Never raises for what it finds on disk.

    ``write=False`` (a read-only viewer): the verdict is returned, never written, and no
    process is killed; an overdue cancel is left to a reader that may act."""
    if rec.state != "running":
        return rec
    folder = Path(rec.run_dir)
    if not write:
        try:
            raw = rec.to_status()
            reason = dead_reason(raw, folder)
            if not reason or (reason == LOST_END and running_lock_held(folder)):
                return rec
            error = reason + where(raw)
            return JobRecord.from_dict(dict(raw, state="failed", error=error, message=f"failed: {error}"), folder)
        except Exception as e:  # noqa: BLE001 - a reader must not fail because of a record
            log.warning("job %s: liveness check failed: %s", rec.id, e)
            return rec
    try:
        raw = rec.to_status()
        reason = dead_reason(raw, folder)
        new = mark_failed(folder, reason, rec.pid, base=raw) if reason else None
        if new is None and rec.cancel_requested:
            new = force_cancel(folder, rec)
    except Exception as e:  # noqa: BLE001 - a reader must not fail because of a record
        log.warning("job %s: liveness check failed: %s", rec.id, e)
        return rec
    if new is None:
        return rec
    fresh = read_status(folder)
    if fresh is not None and not fresh.is_damaged and fresh.state != "running":
        return fresh
    return JobRecord.from_dict(new, folder)
