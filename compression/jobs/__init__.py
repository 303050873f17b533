"""Background jobs: run recipes in worker processes, with progress, cancel, and nothing lost.

``from compression import jobs`` gives the public interface (``api``) plus the worker
functions. Modules, by concern: ``api`` (submit, list, get, cancel, remove, logs, wait),
``worker`` (consumer, fault check, start/stop), ``execute`` (one job in a worker process),
``records`` (status.json, liveness), ``queue`` (the only Huey import), ``cli`` (the job
commands of ``python -m compression``). See docs/ARCHITECTURE.md, "Job records".
"""

from compression.jobs.api import (
    JobBusy,
    UnknownJob,
    cancel,
    get_job,
    list_damaged,
    list_jobs,
    read_log,
    remove,
    resolve_job_id,
    submit,
    wait,
)
from compression.jobs.execute import PROGRESS_INTERVAL_S, execute_job
from compression.jobs.queue import QueueError, queue_url
from compression.jobs.records import WORKER_DIED
from compression.jobs.worker import (
    WorkerAlreadyRunning,
    default_workers,
    ensure_worker,
    recover,
    run_worker,
    stop_worker,
    worker_info,
    worker_running,
)
from compression.jobs.records import JobRecord

__all__ = [
    "JobBusy",
    "JobRecord",
    "PROGRESS_INTERVAL_S",
    "QueueError",
    "UnknownJob",
    "WORKER_DIED",
    "WorkerAlreadyRunning",
    "cancel",
    "default_workers",
    "ensure_worker",
    "execute_job",
    "get_job",
    "list_damaged",
    "list_jobs",
    "queue_url",
    "read_log",
    "recover",
    "remove",
    "resolve_job_id",
    "run_worker",
    "stop_worker",
    "submit",
    "wait",
    "worker_info",
    "worker_running",
]
