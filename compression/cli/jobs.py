"""Command-line job commands of ``python -m compression``: submit, jobs, status, cancel, logs, worker.

``compression/__main__.py`` calls ``add_job_commands(subparsers)``; each subcommand sets
``func(args) -> exit code``. Exit codes: 0 ok; 1 the job failed (``submit --wait``), the
queue is unreachable, the workspace cannot be written (read-only or full disk), or
another worker serves the workspace; 2 a user error (bad recipe, unknown job id). Errors
are one line on stderr. Text from job records (names, messages) is printed with control
characters escaped, so a name cannot move the cursor or recolour the terminal.

There is deliberately no ``python -m compression.jobs...`` entry point: a worker process
imports each module once. Nothing here imports TensorFlow.
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
    p = subparsers.add_parser("submit", help="queue a recipe (or a study spec) for the background workers; prints "
                                             "the job (or study) id")
    p.add_argument("recipe", help="recipe JSON file, or a study spec (a JSON object with a \"kind\")")
    p.add_argument("--wait", action="store_true", help="wait until the job ends; exit 1 unless it succeeded")
    p.add_argument("--start-worker", action="store_true",
                   help="start the workspace's background worker if none runs")
    _home_arg(p)
    p.set_defaults(func=cmd_submit)

    p = subparsers.add_parser("jobs", help="list studies and jobs, newest first (and damaged run folders)")
    p.add_argument("--json", action="store_true", help="print the records as a JSON list")
    p.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled", "damaged"])
    p.add_argument("--remove-damaged", action="store_true",
                   help="delete the run folders whose status.json is missing or unreadable")
    p.add_argument("--study", default=None, help="only the runs of this study")
    _home_arg(p)
    p.set_defaults(func=cmd_jobs)

    p = subparsers.add_parser("status", help="print a job's (or a study's) record as JSON")
    p.add_argument("job", help="job or study id (or a unique part of its start or end)")
    _home_arg(p)
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("cancel", help="cancel a queued or running job, or a study with its runs")
    p.add_argument("job")
    p.add_argument("--wait", action="store_true",
                   help="wait until it has ended (at most the cancel grace period, $COMPRESSION_CANCEL_GRACE)")
    _home_arg(p)
    p.set_defaults(func=cmd_cancel)

    p = subparsers.add_parser("logs", help="print a job's (or a study's) log")
    p.add_argument("job")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    _home_arg(p)
    p.set_defaults(func=cmd_logs)

    p = subparsers.add_parser("worker", help="run the workspace's job worker in the foreground "
                                             "(Ctrl-C: finish running jobs, then stop)")
    p.add_argument("--workers", type=int, default=None,
                   help="concurrent jobs (default: $COMPRESSION_WORKERS, else half the cores)")
    p.add_argument("--no-preload", action="store_true",
                   help="import TensorFlow at the first job instead of at start")
    p.add_argument("--stop", action="store_true", help="stop the workspace's running worker instead")
    _home_arg(p)
    p.set_defaults(func=cmd_worker)

    from compression.cli.study import add_study_commands

    add_study_commands(subparsers)


def safe(text) -> str:
    """``text`` with control characters (and other non-printables) escaped: ``\\x1b``, ``\\n``."""
    text = "" if text is None else str(text)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _err(text: str) -> None:
    print(f"error: {safe(text)}", file=sys.stderr)


def _guard(fn):
    """User errors -> exit 2; queue, disk and worker-lock errors -> exit 1; one line each."""

    def wrapped(args) -> int:
        from compression.jobs import QueueError, WorkerAlreadyRunning
        from compression.store.workspace import LockTimeout

        try:
            return fn(args)
        except UserError as e:
            _err(str(e))
            return 2
        except (QueueError, WorkerAlreadyRunning, LockTimeout) as e:
            _err(str(e))
            return 1
        except BrokenPipeError:
            raise  # compression.__main__.main ends quietly
        except OSError as e:
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            _err(f"cannot write to the workspace{where}: {e.strerror or e}")
            return 1

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _study_or_job(text: str, home) -> tuple[str, str]:
    """("study", id) or ("job", id) for an id or a unique part of one."""
    from compression import jobs
    from compression.jobs import studies

    if text.strip().startswith("s-"):
        return "study", studies.resolve_study_id(text, home)
    try:
        return "job", jobs.resolve_job_id(text, home)
    except jobs.UnknownJob as missing:
        try:
            return "study", studies.resolve_study_id(text, home)
        except studies.UnknownStudy:
            raise missing from None


def _load_submission(path: str):
    """A Recipe, or a study spec (a JSON object with a "kind")."""
    from compression import studies
    from compression.recipe import Recipe

    try:
        with open(path, "rb") as f:
            raw = f.read(2_000_000)
        data = studies.loads(raw)
    except (OSError, UserError):
        data = None
    if studies.is_spec(data):
        return studies.load_spec(path)
    return Recipe.load(path)


@_guard
def cmd_submit(args) -> int:
    from compression import jobs
    from compression.jobs import studies

    what = _load_submission(args.recipe)
    base_dir = os.path.dirname(os.path.abspath(args.recipe))
    if isinstance(what, studies.StudySpec):  # a study: its runs are queued as it goes
        ident = studies.submit_study(what, args.home, base_dir=base_dir)
        print(ident, flush=True)
        print(f"{what.kind} study: {studies.study_cost(what).text}", file=sys.stderr)
    else:
        ident = jobs.submit(what, args.home, base_dir=base_dir)
        print(ident, flush=True)
    if args.start_worker:
        jobs.ensure_worker(args.home)
    elif not jobs.worker_running(args.home) and jobs.queue_url() == "sqlite":
        print("note: no worker runs for this workspace; start one with: python -m compression worker",
              file=sys.stderr)
    if args.wait:
        if isinstance(what, studies.StudySpec):
            record = studies.wait_study(ident, args.home)
            state, why = record["state"], record.get("error") or record.get("message")
        else:
            rec = jobs.wait(ident, args.home)
            state, why = rec.state, rec.error or rec.message
        print(f"{state}: {safe(why)}", file=sys.stderr)
        return 0 if state == "succeeded" else 1
    return 0


def _study_row(record: dict) -> str:
    p = record.get("progress") or {}
    runs = f"{p.get('done', 0)}/{p.get('planned', '?')}"
    frac = p.get("done", 0) / max(1, p.get("planned") or 1)
    created = safe(record.get("created_at") or "")[:19].replace("T", " ")
    return (f"{safe(record.get('id')):24} {safe(record.get('state')):10} {frac:5.0%} "
            f"{safe(record.get('kind')) + ' ' + runs:16.16} {created:19} {safe(record.get('name'))}")


def _row(rec) -> str:
    stage = safe(rec.stage or "-")
    if rec.epoch and rec.epochs and rec.state == "running":
        stage += f" {rec.epoch}/{rec.epochs}"
    created = safe(rec.created_at or "")[:19].replace("T", " ")
    name = safe(rec.name) if not rec.is_damaged else safe(rec.error)
    return f"{rec.id:22} {rec.state:10} {rec.progress:5.0%} {stage:16.16} {created:19} {name}"


@_guard
def cmd_jobs(args) -> int:
    from compression import jobs

    if args.remove_damaged:
        removed = [jobs.remove(r.id, args.home) for r in jobs.list_damaged(args.home)]
        for job_id in removed:
            print(f"removed {job_id}")
        if not removed:
            print("no damaged run folders", file=sys.stderr)
        return 0
    from compression.jobs import studies

    recs = jobs.list_jobs(args.home) + jobs.list_damaged(args.home)
    recs = [r for r in recs if not args.state or r.state == args.state]
    found = [] if args.state == "damaged" else [s for s in studies.list_studies(args.home, move_on=True)
                                                if not args.state or s.get("state") == args.state]
    if args.study:
        record = studies.get_study(args.study, args.home)
        mine = {e.get("run") for e in record.get("runs") or []}
        recs, found = [r for r in recs if r.id in mine], []
    if args.json:
        print(json.dumps([dict(s, kind="study", study_kind=s.get("kind")) for s in found]
                         + [r.to_dict() for r in recs], indent=2))
        return 0
    if not recs and not found:
        print("no jobs", file=sys.stderr)
        return 0
    if found:
        print(f"{'STUDY':24} {'STATE':10} {'PROG':>5} {'KIND':16} {'CREATED (UTC)':19} NAME")
        for record in found:
            print(_study_row(record))
        if not recs:
            return 0
        print()
    print(f"{'ID':22} {'STATE':10} {'PROG':>5} {'STAGE':16} {'CREATED (UTC)':19} NAME")
    for rec in recs:
        print(_row(rec))
    if any(r.is_damaged for r in recs):
        print("damaged run folders can be deleted with: python -m compression jobs --remove-damaged",
              file=sys.stderr)
    return 0


@_guard
def cmd_status(args) -> int:
    from compression import jobs
    from compression.jobs import studies

    what, ident = _study_or_job(args.job, args.home)
    if what == "study":
        print(json.dumps(studies.get_study(ident, args.home), indent=2))
        return 0
    print(json.dumps(jobs.get_job(ident, args.home).to_dict(), indent=2))  # JSON escapes control characters
    return 0


@_guard
def cmd_cancel(args) -> int:
    from compression import jobs
    from compression.jobs import studies
    from compression.jobs.records import cancel_grace_s

    what, ident = _study_or_job(args.job, args.home)
    if what == "study":
        record = studies.cancel_study(ident, args.home)
        print(f"{ident}: {record['state']} ({safe(record.get('message'))})")
        if args.wait:
            for e in record.get("runs") or []:
                if e.get("state") in ("queued", "running"):
                    jobs.wait(e["run"], args.home, timeout=cancel_grace_s() + 10)
        return 0
    rec = jobs.cancel(ident, args.home, wait_s=cancel_grace_s() + 10 if args.wait else None)
    if rec.state == "running":
        print(f"{rec.id}: cancel requested; it stops at the next batch")
    else:
        print(f"{rec.id}: {rec.state}" + (f" ({safe(rec.message)})" if rec.message else ""))
    return 0


@_guard
def cmd_logs(args) -> int:
    from compression import jobs
    from compression.jobs import studies
    from compression.store.runs import resolve
    from compression.studies import record as study_record

    what, job_id = _study_or_job(args.job, args.home)
    if what == "study":
        path = study_record.study_dir(job_id, args.home) / study_record.LOG_FILE
        finished = lambda: studies.get_study(job_id, args.home).get("state") != "running"  # noqa: E731
    else:
        path = resolve(job_id, args.home) / "log.txt"
        finished = lambda: jobs.get_job(job_id, args.home).finished  # noqa: E731
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
        if not args.follow or finished() and not chunk:
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
