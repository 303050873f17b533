"""The queue: the only module that imports Huey (https://huey.readthedocs.io).

Huey carries nothing but a job id from ``submit`` to a worker; the record of truth is
``runs/<id>/status.json``. SQLite (``$COMPRESSION_HOME/queue.db``) by default, Redis when
``COMPRESSION_QUEUE=redis://host:6379/0`` so workers on several machines share it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from compression.errors import UserError

QUEUE_ENV = "COMPRESSION_QUEUE"  # "sqlite" (default) or a redis:// URL
QUEUE_NAME_ENV = "COMPRESSION_QUEUE_NAME"  # one queue per name on a Redis server
TASK_NAME = "run_job"


class QueueError(RuntimeError):
    """The queue cannot be reached (e.g. the Redis server is down)."""


def queue_url() -> str:
    return os.environ.get(QUEUE_ENV, "").strip() or "sqlite"


def queue_name() -> str:
    return os.environ.get(QUEUE_NAME_ENV, "").strip() or "compression"


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def _submit_only(job_id: str) -> None:  # pragma: no cover - a submit-side instance is never consumed
    raise RuntimeError("this Huey instance only submits jobs")


def make_huey(home: Path, run_job: Callable[[str], None] | None = None,
              on_startup: Callable[[], None] | None = None):
    """A Huey instance for this workspace with the one task registered.

    ``run_job(job_id)`` is the task body (worker side); a submit-side instance leaves it
    out, since only the task's name is serialised. ``on_startup`` runs in each forked
    worker process as it starts.
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
    body = run_job or _submit_only

    def run_job_task(job_id: str) -> None:  # defined here on both sides: Huey names tasks by module
        body(job_id)

    huey.compression_task = huey.task(name=TASK_NAME)(run_job_task)
    if on_startup is not None:
        huey.on_startup(name="compression_worker_startup")(on_startup)
    return huey


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def client(home: Path):
    """The cached submit-side Huey instance of a workspace."""
    key = (str(home), queue_url(), queue_name())
    with _CLIENTS_LOCK:
        huey = _CLIENTS.get(key)
        if huey is None:
            huey = _CLIENTS[key] = make_huey(home)
        return huey


def close_client(home: Path) -> None:
    """Close the cached submit-side instance's connection (a worker's main process forks after)."""
    key = (str(home), queue_url(), queue_name())
    with _CLIENTS_LOCK:
        huey = _CLIENTS.get(key)
    if huey is not None:
        huey.storage.close()


def enqueue(huey, job_id: str) -> None:
    """Put a job id in the queue. The Huey task id is the job id, so revoke and pending
    speak of jobs."""
    huey.enqueue(huey.compression_task.task_class((job_id,), {}, id=job_id))


def pending_ids(huey) -> set[str]:
    return {t.id for t in huey.pending()}


def revoke(huey, job_id: str) -> None:
    huey.revoke_by_id(job_id, revoke_once=True)


def consumer(huey, workers: int, on_loop: Callable[[], None],
             on_process_exit: Callable[[int, int], None], on_scheduler_start: Callable[[], None]):
    """Huey's consumer with ``workers`` forked processes, calling ``on_loop()`` from its main
    loop (no extra threads, so forking a replacement process never copies a held lock) and
    ``on_process_exit(pid, exitcode)`` for each worker process that died abnormally."""
    from huey.consumer import Consumer, Scheduler

    class JobScheduler(Scheduler):
        def initialize(self):
            on_scheduler_start()
            super().initialize()

    class JobConsumer(Consumer):
        scheduler_class = JobScheduler

        def loop(self, health_check_ts=None):
            ts = super().loop(health_check_ts)
            on_loop()
            return ts

        def check_worker_health(self):
            for _, proc in self.worker_threads:
                if not proc.is_alive() and proc.exitcode not in (0, None):
                    on_process_exit(proc.pid, proc.exitcode)
            return super().check_worker_health()

    return JobConsumer(
        huey, workers=workers, worker_type="process", periodic=False,
        initial_delay=0.1, backoff=1.15, max_delay=0.5,  # an idle worker polls SQLite twice a second
        check_worker_health=True, health_check_interval=1, max_tasks=MAX_TASKS_PER_PROCESS,
    )


MAX_TASKS_PER_PROCESS = 20  # recycle a worker process after this many jobs (bounds leaks)
