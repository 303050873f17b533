"""Running one job inside a worker process: claim, progress, heartbeat, cancel, final state.

* Claim: the process takes the run folder's ``.running`` flock, then (under the folder
  lock) turns the ``queued`` record ``running``. A cancelled job, or one another process
  runs, is skipped.
* Progress goes from the engine's callback to ``progress.json`` and ``status.json``, at
  most one write per ``PROGRESS_INTERVAL_S`` (by an injectable clock), always on the first
  event, stage and epoch changes, and the last event.
* Cancel: a ``cancel`` file makes the callback raise ``Cancelled`` at the next batch; a
  worker-run job that does not come back to the callback within the grace period ends
  its own process (``hard_cancel``). A record someone else ended (forced cancel, marked
  failed) is never overwritten: the job stops at its next progress event.
* A run folder deleted under the job stops it at the next progress event; nothing
  recreates the folder (no lock or write ever creates a missing folder).
* The final state is written with retries; if every attempt fails (full disk), the
  process releases ``.running`` and readers fail the job from that.

TensorFlow is imported here only when a job runs (``engine()``), never at import.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from compression.errors import Cancelled, UserError
from compression.jobs import records
from compression.jobs.records import HOST, RUNNING_FILE, log_line, where
from compression.recipe import Recipe
from compression.jobs.records import FINAL_STATES
from compression.store.workspace import read_json
from compression.studies.record import TAGS_FILE
from compression.store.workspace import (
    LockTimeout,
    atomic_write_json,
    home_dir,
    now_iso,
    run_dir,
    try_flock,
)

log = logging.getLogger("compression.jobs")

RUNNER_ENV = "COMPRESSION_RUNNER"  # module:function run instead of pipeline.run_recipe (tests)
PROGRESS_INTERVAL_S = 0.25  # at most ~4 progress writes a second
HEARTBEAT_S = 5.0  # a running job's heartbeat period

Runner = Callable[[Recipe, Path, Callable[[dict], None]], dict]


class RunFolderGone(Exception):
    """The job's run folder was deleted while it ran."""


class Superseded(Exception):
    """Someone else ended this job's record (a forced cancel, or a reader that failed it)."""


class JobRun:
    """One job inside a worker process: status writes, throttled progress, heartbeat."""

    def __init__(self, folder: Path, rec: dict, hard_cancel: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 interval_s: float = PROGRESS_INTERVAL_S):
        self.folder = folder
        self.rec = rec
        self.hard_cancel = hard_cancel
        self.clock = clock
        self.interval_s = interval_s
        self.mutex = threading.Lock()  # status writes from the job and the heartbeat thread
        self.last_event: dict | None = None
        self.last_written: dict | None = None
        self.last_write_t = 0.0
        self.last_key: tuple | None = None
        self.stop = threading.Event()
        self.write_errors = 0
        self.gone = False  # the run folder was deleted
        self.ended_by: str | None = None  # a terminal state someone else wrote
        self.beat = threading.Thread(target=self._heartbeat, name="job-heartbeat", daemon=True)

    # status.json ----------------------------------------------------------------------------
    def save(self, **changes) -> None:
        """Merge ``changes`` into the running record and write it (never a terminal state)."""
        with self.mutex:
            if self.gone or self.ended_by:
                return
            self.rec.update(changes)
            self.rec["heartbeat_at"] = now_iso()
            try:
                with records.lock(self.folder):
                    on_disk = records.read_raw(self.folder)
                    if on_disk and on_disk.get("state") in FINAL_STATES:
                        self.ended_by = on_disk["state"]
                        return
                    records.write_raw(self.folder, self.rec)
            except (OSError, LockTimeout) as e:  # a full disk must not kill the run; say it once
                if records.folder_gone(e) and not self.folder.is_dir():
                    self.gone = True
                    return
                self.write_errors += 1
                if self.write_errors == 1:
                    log.warning("job %s: cannot write its status: %s", self.folder.name, e)

    def finish(self, state: str, **changes) -> bool:
        """Write the terminal state (with retries). False if it could not be recorded."""
        self.stop.set()
        with self.mutex:
            if self.gone or self.ended_by:
                return False
            changes = dict(changes, state=state, finished_at=now_iso(), heartbeat_at=now_iso())
            self.rec.update(changes)
            try:
                written = records.update_final(self.folder, changes, base=self.rec)
            except FileNotFoundError:
                self.gone = True
                return False
            except (OSError, LockTimeout) as e:
                log.error("job %s ended %s but its record cannot be written (%s); readers will fail it",
                          self.folder.name, state, e)
                return False
            if written is None:
                self.ended_by = (records.read_raw(self.folder) or {}).get("state") or "unknown"
                return False
            return True

    # progress ---------------------------------------------------------------------------------
    def progress(self, event: dict) -> None:
        """The engine's progress callback."""
        if self.gone:
            raise RunFolderGone("its run folder was deleted")
        if self.ended_by:
            raise Superseded(f"its record was set to {self.ended_by} by another process")
        if os.path.exists(self.folder / "cancel"):
            raise Cancelled("cancelled by user")
        self.last_event = event
        now = self.clock()
        key = (event.get("phase"), event.get("stage"), event.get("stage_index"), event.get("epoch"))
        fraction = event.get("fraction")
        if (
            self.last_key is None
            or key != self.last_key
            or (isinstance(fraction, (int, float)) and fraction >= 1)
            or now - self.last_write_t >= self.interval_s
        ):
            if not self.folder.is_dir():
                self.gone = True
                raise RunFolderGone("its run folder was deleted")
            if self.last_key is None or key[:3] != self.last_key[:3]:
                index, count = event.get("stage_index"), event.get("stage_count")
                of = f" (stage {index + 1} of {count})" if isinstance(index, int) and count and index < count else ""
                log_line(self.folder, f"{event.get('stage')}: {event.get('phase') or 'working'}{of}")
            self.last_key = key
            self._write_progress(event)
            self.last_write_t = now

    def flush(self) -> None:
        """Write the last event if throttling skipped it."""
        if self.last_event is not None and self.last_event is not self.last_written and not self.gone:
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
        except OSError:
            return
        grace = records.cancel_grace_s()
        if time.time() - asked < grace:
            return
        # The engine has not come back to a progress callback for the grace period (e.g. a
        # long conversion): end the process; the consumer starts a fresh one.
        with self.mutex:
            if self.stop.is_set() or self.rec.get("state") != "running":
                return  # the job ended meanwhile
            msg = f"cancelled by user{where(self.rec)}; its worker process was stopped to end it"
            changes = dict(state="cancelled", finished_at=now_iso(), message=msg, heartbeat_at=now_iso())
            with contextlib.suppress(Exception):
                if records.update_final(self.folder, changes, attempts=2, backoff_s=0.05, base=self.rec):
                    log_line(self.folder, f"CANCELLED: {msg}")
            os._exit(75)


@contextlib.contextmanager
def output_to(path: Path):
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


def one_line(e: BaseException) -> str:
    if isinstance(e, UserError):
        text = str(e)
    else:
        first = (str(e).strip().splitlines() or [""])[0]
        text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def engine() -> Runner:
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


def _claim(folder: Path, hard_cancel: bool) -> dict | None:
    stat = records.proc_stat(os.getpid())
    with records.lock(folder):
        rec = records.read_raw(folder)
        if not rec or rec.get("state") != "queued":
            log.info("job %s is %s; skipped", folder.name, (rec or {}).get("state"))
            return None
        rec.update(
            state="running", started_at=now_iso(), host=HOST, pid=os.getpid(),
            pid_start=stat[1] if stat else None, boot_id=records.BOOT_ID, message="starting",
            heartbeat_at=now_iso(), error=None, killable=hard_cancel,
        )
        records.write_raw(folder, rec, fsync=True)
    return rec


def execute_job(job_id: str, home: str | os.PathLike | None = None, runner: Runner | None = None,
                capture_output: bool = True, hard_cancel: bool = False,
                clock: Callable[[], float] = time.monotonic) -> str | None:
    """Run one queued job in this process; returns its final state (None if skipped).

    Called by a worker for each job id it takes from the queue. Returns "gone" when the
    run folder was deleted under the job, and the state the job ended in otherwise (even
    when that state could not be written; readers then fail it from liveness).
    """
    root = home_dir(home)
    folder = run_dir(job_id, root)
    try:
        running_fd = try_flock(folder / RUNNING_FILE)
    except OSError as e:
        log.warning("job %s: cannot open its run folder (%s); skipped", job_id, e)
        return None
    if running_fd is None:
        log.info("job %s is run by another process; skipped", job_id)
        return None
    try:
        try:
            rec = _claim(folder, hard_cancel)
        except (OSError, LockTimeout) as e:
            log.error("job %s: cannot claim it (%s); left queued", job_id, e)
            return None
        if rec is None:
            return None
        return _run(folder, rec, runner, capture_output, hard_cancel, clock)
    finally:
        os.close(running_fd)  # after the final write: readers see it ended, or fail it


def _run(folder: Path, rec: dict, runner: Runner | None, capture_output: bool, hard_cancel: bool,
         clock: Callable[[], float]) -> str:
    log_line(folder, f"started on {HOST} (pid {os.getpid()})")
    job = JobRun(folder, rec, hard_cancel, clock=clock)
    job.beat.start()
    t0 = time.monotonic()
    state: str
    try:
        with output_to(folder / "log.txt") if capture_output else contextlib.nullcontext():
            try:
                recipe = Recipe.from_dict(read_json(folder / "recipe.json"))
                with _study_latency(folder):
                    (runner or engine())(recipe, folder, job.progress)
            except Cancelled:
                state = "cancelled"
                job.flush()
                msg = f"cancelled by user{where(job.rec)}"
                if job.finish(state, message=msg):
                    log_line(folder, f"CANCELLED: {msg} after {time.monotonic() - t0:.1f} s")
            except Exception as e:
                state = "failed"
                if job.gone or isinstance(e, RunFolderGone) or not folder.is_dir():
                    job.gone = True
                    log.warning("job %s: its run folder was deleted while it ran; stopped", folder.name)
                    return "gone"
                job.flush()
                error = one_line(e)
                with contextlib.suppress(OSError):
                    with open(folder / "log.txt", "a", encoding="utf-8") as f:
                        f.write(traceback.format_exc())
                if job.finish(state, error=error, message=f"failed: {error}"):
                    log_line(folder, f"FAILED: {error}")
            except BaseException:  # SIGTERM/SIGINT from the consumer shutting down
                job.flush()
                error = f"the worker was shut down while this job ran{where(job.rec)}; submit it again"
                if job.finish("failed", error=error, message=f"failed: {error}"):
                    log_line(folder, f"FAILED: {error}")
                raise
            else:
                state = "succeeded"
                job.flush()
                wall = time.monotonic() - t0
                if job.finish(state, progress=1.0, message=f"finished in {wall:.1f} s"):
                    log_line(folder, f"SUCCEEDED in {wall:.1f} s")
    finally:
        job.stop.set()
        job.beat.join(timeout=5)
        release_memory()
    if job.gone:
        return "gone"
    if job.ended_by:
        return job.ended_by
    return state


LATENCY_WAIT_ENV = "COMPRESSION_LATENCY_WAIT_S"  # the engine's wait for a quiet machine before timing latency


@contextlib.contextmanager
def _study_latency(folder: Path):
    """A study's run (its folder names studies in studies.json) times latency at once instead of waiting up
    to $COMPRESSION_LATENCY_WAIT_S for the machine to be quiet: a study compares accuracy and size, and its
    other runs train meanwhile. Its report says the timing was not quiet."""
    if not (folder / TAGS_FILE).is_file():
        yield
        return
    before = os.environ.get(LATENCY_WAIT_ENV)
    os.environ[LATENCY_WAIT_ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LATENCY_WAIT_ENV, None)
        else:
            os.environ[LATENCY_WAIT_ENV] = before


def release_memory() -> None:
    if "tf_keras" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["tf_keras"].backend.clear_session()
    gc.collect()
