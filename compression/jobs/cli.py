"""Command-line job commands: submit, jobs, status, cancel, logs, worker.

``compression/__main__.py`` calls ``add_job_commands(subparsers)``; each subcommand sets
``func(args) -> exit code``. Exit codes: 0 ok, 1 the job failed (``submit --wait``) or
the queue is unreachable, 2 a user error (bad recipe, unknown job id), with one line on
stderr. ``python -m compression`` adds them to its own commands.

Nothing here imports TensorFlow: ``worker`` forks worker processes that import it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from compression.errors import UserError


def _home_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=None,
                   help="workspace folder (default: $COMPRESSION_HOME, else ~/.compression)")


def add_job_commands(subparsers) -> None:
    """Add the job subcommands to an argparse ``add_subparsers()`` object."""
    p = subparsers.add_parser("submit", help="queue a recipe for a background worker; prints the job id")
    p.add_argument("recipe", help="recipe JSON file")
    p.add_argument("--wait", action="store_true", help="wait until the job ends; exit 1 unless it succeeded")
    p.add_argument("--start-worker", action="store_true",
                   help="start the workspace's background worker if none runs")
    _home_arg(p)
    p.set_defaults(func=cmd_submit)

    p = subparsers.add_parser("jobs", help="list jobs, newest first")
    p.add_argument("--json", action="store_true", help="print the records as a JSON list")
    p.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    _home_arg(p)
    p.set_defaults(func=cmd_jobs)

    p = subparsers.add_parser("status", help="print a job record as JSON")
    p.add_argument("job", help="job id (or a unique part of its start or end)")
    _home_arg(p)
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job")
    _home_arg(p)
    p.set_defaults(func=cmd_cancel)

    p = subparsers.add_parser("logs", help="print a job's log")
    p.add_argument("job")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    _home_arg(p)
    p.set_defaults(func=cmd_logs)

    p = subparsers.add_parser("worker", help="run a job worker in the foreground (Ctrl-C: finish running jobs, then stop)")
    p.add_argument("--workers", type=int, default=None,
                   help="concurrent jobs (default: $COMPRESSION_WORKERS, else half the cores)")
    p.add_argument("--no-preload", action="store_true",
                   help="import TensorFlow at the first job instead of at start")
    p.add_argument("--stop", action="store_true", help="stop the workspace's running worker instead")
    _home_arg(p)
    p.set_defaults(func=cmd_worker)


def _err(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)


def _guard(fn):
    """User errors (bad recipe, unknown job) -> one line on stderr and exit code 2."""

    def wrapped(args) -> int:
        from compression.jobs import QueueError

        try:
            return fn(args)
        except UserError as e:
            _err(str(e))
            return 2
        except QueueError as e:
            _err(str(e))
            return 1
        except KeyboardInterrupt:
            return 130

    wrapped.__name__ = fn.__name__
    return wrapped


@_guard
def cmd_submit(args) -> int:
    from compression import jobs
    from compression.recipe import Recipe

    recipe = Recipe.load(args.recipe)
    job_id = jobs.submit(recipe, args.home, base_dir=os.path.dirname(os.path.abspath(args.recipe)))
    print(job_id, flush=True)
    if args.start_worker:
        jobs.ensure_worker(args.home)
    elif not jobs.worker_running(args.home) and jobs.queue_url() == "sqlite":
        print("note: no worker runs for this workspace; start one with: python -m compression worker",
              file=sys.stderr)
    if args.wait:
        rec = jobs.wait(job_id, args.home)
        print(f"{rec.state}: {rec.error or rec.message}", file=sys.stderr)
        return 0 if rec.state == "succeeded" else 1
    return 0


def _row(rec) -> str:
    stage = rec.stage or "-"
    if rec.epoch and rec.epochs and rec.state == "running":
        stage += f" {rec.epoch}/{rec.epochs}"
    created = (rec.created_at or "")[:19].replace("T", " ")
    return f"{rec.id:22} {rec.state:10} {rec.progress:5.0%} {stage:16.16} {created:19} {rec.name}"


@_guard
def cmd_jobs(args) -> int:
    from compression import jobs

    recs = [r for r in jobs.list_jobs(args.home) if not args.state or r.state == args.state]
    if args.json:
        print(json.dumps([r.to_dict() for r in recs], indent=2))
        return 0
    if not recs:
        print("no jobs", file=sys.stderr)
        return 0
    print(f"{'ID':22} {'STATE':10} {'PROG':>5} {'STAGE':16} {'CREATED (UTC)':19} NAME")
    for rec in recs:
        print(_row(rec))
    return 0


@_guard
def cmd_status(args) -> int:
    from compression import jobs

    print(json.dumps(jobs.get_job(args.job, args.home).to_dict(), indent=2))
    return 0


@_guard
def cmd_cancel(args) -> int:
    from compression import jobs

    rec = jobs.cancel(args.job, args.home)
    if rec.state == "running":
        print(f"{rec.id}: cancel requested; it stops at the next batch")
    else:
        print(f"{rec.id}: {rec.state}")
    return 0


@_guard
def cmd_logs(args) -> int:
    from compression import jobs

    job_id = jobs.resolve_job_id(args.job, args.home)
    from compression.store.runs import resolve

    path = resolve(job_id, args.home) / "log.txt"
    pos = 0
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            pos += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
        if not args.follow or jobs.get_job(job_id, args.home).finished and not chunk:
            return 0
        time.sleep(0.5)


@_guard
def cmd_worker(args) -> int:
    from compression import jobs

    if args.stop:
        stopped = jobs.stop_worker(args.home)
        print("worker stopped" if stopped else "no worker was running", file=sys.stderr)
        return 0
    if "tensorflow" in sys.modules:
        # Worker processes are forked; TensorFlow must not be loaded before the fork.
        cmd = [sys.executable, "-m", "compression", "worker"]
        for flag, value in (("--home", args.home), ("--workers", args.workers)):
            if value is not None:
                cmd += [flag, str(value)]
        if args.no_preload:
            cmd.append("--no-preload")
        os.execv(sys.executable, cmd)
    return jobs.run_worker(args.home, workers=args.workers, preload=False if args.no_preload else None)


def main(argv: list[str] | None = None) -> int:
    import compression  # noqa: F401  (environment before anything else)

    parser = argparse.ArgumentParser(prog="python -m compression", description="background compression jobs")
    sub = parser.add_subparsers(dest="command", required=True)
    add_job_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
