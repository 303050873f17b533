"""The worker: a Huey consumer with one forked process per concurrent job, plus the fault check.

One worker per workspace: ``run_worker`` takes ``$COMPRESSION_HOME/worker.lock`` (an
``flock``) and writes ``worker.json`` (pid, host, start, processes, queue); a second
worker on the same workspace refuses with ``WorkerAlreadyRunning`` naming the first, so
``COMPRESSION_WORKERS`` bounds the jobs running at once. Started as
``python -m compression worker`` (by hand, or detached by ``ensure_worker``).

Every ``RECOVER_EVERY_S`` seconds the consumer's main loop runs ``recover``: running jobs
whose worker is gone are failed, overdue cancels are forced, queued jobs lost from the
queue are queued again. ``recover`` never raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from compression.errors import UserError
from compression.jobs import queue, records
from compression.jobs.execute import engine, execute_job
from compression.jobs.records import list_statuses
from compression.store.workspace import atomic_write_json, home_dir, locked, now_iso, run_dir, try_flock

log = logging.getLogger("compression.jobs")

WORKERS_ENV = "COMPRESSION_WORKERS"  # concurrent jobs per worker
EMBEDDED_ENV = "COMPRESSION_EMBEDDED_WORKER"  # "0": ensure_worker never starts one
PRELOAD_ENV = "COMPRESSION_WORKER_PRELOAD"  # "0": import TensorFlow at the first job, not at start
RECOVER_EVERY_S = 5.0  # the worker's check for dead and lost jobs
LOST_AFTER_S = 10.0  # a queued job missing from the queue this long was lost by a dead worker


class WorkerAlreadyRunning(RuntimeError):
    """Another worker serves this workspace (the message names it)."""


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


# --- the fault check ---------------------------------------------------------------------------


def recover(home: str | os.PathLike | None = None, huey=None, missing: dict | None = None,
            lost_after_s: float = LOST_AFTER_S) -> dict:
    """One pass of the worker's fault check; returns what it changed. Never raises.

    * ``running`` jobs whose worker is gone are marked ``failed``, overdue cancels forced;
    * ``queued`` jobs that are not in the queue for ``lost_after_s`` seconds across two
      passes (their worker died between taking them and starting them) are queued again;
    * damaged records are skipped (``python -m compression jobs`` shows them);
    * running studies move on: the next runs of a study whose runs ended are submitted, a study
      whose runs all ended is aggregated (compression.jobs.studies.advance_all).

    ``missing`` carries first-seen times between passes (the worker keeps one dict).
    """
    missing = {} if missing is None else missing
    out: dict = {"failed": [], "cancelled": [], "requeued": [], "errors": [], "studies": []}
    try:
        root = home_dir(home)
        recs = list_statuses(root)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(f"cannot list the workspace: {e}")
        log.warning("fault check: cannot list the workspace: %s", e)
        return out
    queued = []
    for rec in recs:
        try:
            if rec.state == "running":
                new = records.checked(rec)
                if new.state in ("failed", "cancelled"):
                    out[new.state].append(rec.id)
            elif rec.state == "queued":
                queued.append(rec.id)
        except Exception as e:  # noqa: BLE001
            out["errors"].append(f"{rec.id}: {e}")
            log.warning("fault check of job %s failed: %s", rec.id, e)
    try:
        if queued:
            _requeue_lost(root, huey or queue.client(root), queued, missing, lost_after_s, out)
        for job_id in list(missing):
            if job_id not in queued:
                missing.pop(job_id)
    except Exception as e:  # noqa: BLE001 - e.g. the queue is unreachable for a moment
        out["errors"].append(f"queue: {e}")
        log.warning("fault check: queue: %s", e)
    try:
        from compression.jobs.studies import advance_all  # studies submit through api, above this module

        out["studies"] = advance_all(root)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(f"studies: {e}")
        log.warning("fault check: studies: %s", e)
    return out


def _requeue_lost(root: Path, huey, queued: list[str], missing: dict, lost_after_s: float, out: dict) -> None:
    pending = queue.pending_ids(huey)
    now = time.monotonic()
    for job_id in queued:
        if job_id in pending:
            missing.pop(job_id, None)
            continue
        first = missing.setdefault(job_id, now)
        if now - first < lost_after_s:
            continue
        folder = run_dir(job_id, root)
        if (records.read_raw(folder) or {}).get("state") == "queued":
            queue.enqueue(huey, job_id)
            records.log_line(folder, "re-queued: it was no longer in the queue (its worker stopped before starting it)")
            log.warning("job %s re-queued (lost from the queue)", job_id)
            out["requeued"].append(job_id)
        missing.pop(job_id, None)


def _fail_jobs_of(root: Path, pid: int, exitcode: int) -> None:
    """The consumer saw its worker process ``pid`` die: fail the job it ran."""
    if exitcode < 0:
        sig = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        how = f"was killed by {sig}" + (" (out of memory, or killed by hand)" if sig == "SIGKILL" else "")
    else:
        how = f"exited with code {exitcode}"
    reason = f"the worker process running this job (pid {pid}) {how}"
    try:
        for rec in list_statuses(root):
            if rec.state == "running" and rec.host == records.HOST and rec.pid == pid:
                records.mark_failed(Path(rec.run_dir), reason, pid, base=rec.to_status())
    except Exception as e:  # noqa: BLE001
        log.warning("could not fail the jobs of worker process %d: %s", pid, e)


# --- the worker process ----------------------------------------------------------------------------


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


def _process_startup(preload: bool) -> None:
    _die_with_parent()
    with contextlib.suppress(Exception):
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
    if preload:
        t0 = time.monotonic()
        try:
            engine()  # imports TensorFlow: ~7 s, once per process
        except Exception as e:  # the job itself will report it
            log.warning("could not preload the engine: %s", e)
        else:
            log.info("engine loaded in %.1f s (pid %d)", time.monotonic() - t0, os.getpid())


def _run_job(root: Path):
    def run_job(job_id: str) -> None:
        execute_job(job_id, root, hard_cancel=True)

    return run_job


def _startup(preload: bool):
    def startup() -> None:
        _process_startup(preload)

    return startup


def _describe(info: dict) -> str:
    if not info:
        return "another worker (it has not written worker.json yet)"
    return (f"the worker with pid {info.get('pid')} on {info.get('host')} (started {info.get('started_at')}, "
            f"{info.get('workers')} process(es))")


def _take_worker_lock(root: Path) -> int:
    """The fd holding ``worker.lock``; raises WorkerAlreadyRunning naming the holder."""
    fd = try_flock(root / "worker.lock")
    if fd is not None:
        return fd
    info: dict = {}
    deadline = time.monotonic() + 2.0  # two workers started at once: the first is writing worker.json
    while time.monotonic() < deadline:
        info = worker_json(root)
        if info:
            break
        time.sleep(0.05)
    raise WorkerAlreadyRunning(
        f"{root} is already served by {_describe(info)}; stop it with: python -m compression worker --stop")


def run_worker(home: str | os.PathLike | None = None, workers: int | None = None,
               preload: bool | None = None) -> int:
    """Run a worker in the foreground until SIGINT (graceful: running jobs finish) or
    SIGTERM (running jobs stop and are marked failed). Returns an exit code.

    Raises ``WorkerAlreadyRunning`` when another worker serves the workspace.
    """
    root = home_dir(home)
    workers = workers or default_workers()
    preload = _flag(PRELOAD_ENV, True) if preload is None else preload
    lock_fd = _take_worker_lock(root)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(processName)s %(name)s %(levelname)s: %(message)s")
    info_path = root / "worker.json"
    try:
        atomic_write_json(info_path, {
            "pid": os.getpid(), "host": records.HOST, "started_at": now_iso(), "workers": workers,
            "queue": queue.queue_url(), "home": str(root),
        })
        huey = queue.make_huey(root, run_job=_run_job(root), on_startup=_startup(preload))
        state = {"next": 0.0, "missing": {}}

        def on_loop() -> None:
            if time.monotonic() < state["next"]:
                return
            state["next"] = time.monotonic() + RECOVER_EVERY_S
            checker = None
            try:
                checker = queue.make_huey(root)
                recover(root, checker, state["missing"])
            except Exception:  # noqa: BLE001
                log.exception("fault check failed")
            finally:
                if checker is not None:
                    with contextlib.suppress(Exception):
                        checker.storage.close()  # never fork with an open connection
                with contextlib.suppress(Exception):  # nor with the one a study's submit opened
                    queue.close_client(root)

        consumer = queue.consumer(huey, workers, on_loop=on_loop,
                                  on_process_exit=lambda pid, code: _fail_jobs_of(root, pid, code),
                                  on_scheduler_start=_die_with_parent)
        log.info("worker for %s: %d process(es), queue %s", root, workers, queue.queue_url())
        consumer.run()
    finally:
        with contextlib.suppress(OSError):
            info_path.unlink()
        os.close(lock_fd)
    return 0


def worker_json(root: Path) -> dict:
    from compression.store.workspace import read_json

    data = read_json(root / "worker.json")
    return data if isinstance(data, dict) else {}


def worker_running(home: str | os.PathLike | None = None) -> bool:
    """Whether a worker holds this workspace's worker lock."""
    try:
        fd = try_flock(home_dir(home) / "worker.lock", create=False)
    except FileNotFoundError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def worker_info(home: str | os.PathLike | None = None) -> dict:
    """{"running": bool, plus pid, host, started_at, workers, queue when one runs}."""
    root = home_dir(home)
    running = worker_running(root)
    return {"running": running, **(worker_json(root) if running else {})}


def _rotate(path: Path, max_bytes: int = 5_000_000) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))


def ensure_worker(home: str | os.PathLike | None = None, timeout: float = 20) -> bool:
    """Start the embedded worker unless one runs; True if this call started it.

    Guarded by a lock file so that two app processes or tabs never start two. The worker
    runs detached (its own session), logs to ``$COMPRESSION_HOME/worker.log`` and keeps
    running after the dashboard stops. ``COMPRESSION_EMBEDDED_WORKER=0`` turns this off.
    """
    if not _flag(EMBEDDED_ENV, True):
        return False
    root = home_dir(home)
    with locked(root / "worker-start.lock", timeout_s=60):
        if worker_running(root):
            return False
        logfile = root / "worker.log"
        _rotate(logfile)
        env = dict(os.environ)
        env["COMPRESSION_HOME"] = str(root)
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        with open(logfile, "ab") as out:
            proc = _popen([sys.executable, "-m", "compression", "worker", "--home", str(root)], out, env, root)
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
    info = worker_json(root)
    pid = info.get("pid")
    if not isinstance(pid, int) or info.get("host") != records.HOST:
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
