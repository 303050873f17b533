"""Studies on the background workers: submit, read, list, cancel, and the advance every reader does.

A study's record lives in ``$COMPRESSION_HOME/studies/<id>/`` (compression/studies/record.py);
its runs are ordinary jobs under ``runs/``, each with ``studies.json`` naming the studies that use
it. Nothing here waits: ``advance_study`` starts whatever the study's plan allows now, through the
queue, and returns. The worker's periodic check calls ``advance_all`` every few seconds, and every
read of a study (a page, ``status``) advances it too, so a study goes on after an app restart or a
worker restart and is never stuck "running": a run whose worker died is started again (a few
times), any other failure fails the study with the run's reason.

Identical runs are shared: before submitting, the backend looks for a run in the workspace with
the same resolved recipe (``recipe_hash``: same baseline, steps, seed and export) that succeeded
or is still going, and uses it. Cancelling a study cancels its queued and running runs, except
those another active study still uses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from compression.errors import UserError
from compression.jobs import api, records
from compression.jobs.records import list_statuses
from compression.store.workspace import atomic_write_json, home_dir, locked, now_iso, run_dir, try_flock
from compression.studies import StudySpec, cost as study_cost, parse_spec
from compression.studies import record as rec
from compression.studies.driver import advance
from compression.studies.kind import Outcome


class UnknownStudy(UserError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown study"


LOCK = ".lock"


# --- the backend: runs as queued jobs ------------------------------------------------------------


class QueueBackend:
    """Starts a study's runs as jobs in a workspace, reusing identical runs."""

    def __init__(self, root: Path):
        self.root = root
        self._index: dict[str, str] | None = None
        self._studies: list[dict] | None = None

    def _find(self, digest: str) -> str | None:
        if self._index is None:
            self._index = {}
            ranked = {}
            for r in list_statuses(self.root):  # newest first
                if r.state not in ("succeeded", "queued", "running") or not isinstance(r.recipe, dict):
                    continue
                if r.state == "succeeded" and not (Path(r.run_dir) / "report.json").is_file():
                    continue
                h = rec.recipe_hash(r.recipe)
                rank = 0 if r.state == "succeeded" else 1
                if h not in ranked or rank < ranked[h]:
                    ranked[h], self._index[h] = rank, r.id
        return self._index.get(digest)

    def start(self, key: str, recipe: dict, study_id: str) -> tuple[str, bool]:
        digest = rec.recipe_hash(recipe)
        found = self._find(digest)
        if found is not None:
            tag(run_dir(found, self.root), study_id)
            return found, True
        job_id = api.submit(recipe, self.root, studies=[study_id])
        if self._index is not None:
            self._index[digest] = job_id
        return job_id, False

    def outcome(self, ref: str) -> Outcome:
        try:
            r = api.get_job(ref, self.root)
        except UserError:
            return Outcome("", "failed", None, f"job {ref} is no longer in the workspace (its run folder was removed)",
                           ref)
        if r.is_damaged:
            return Outcome("", "failed", Path(r.run_dir), f"its record is damaged: {r.error}", ref)
        error = r.error if r.state == "failed" else (r.message if r.state == "cancelled" else None)
        return Outcome("", r.state, Path(r.run_dir), error, ref)

    def run_dir(self, ref: str) -> Path | None:
        folder = run_dir(ref, self.root)
        return folder if folder.is_dir() else None

    def cancel(self, ref: str, study_id: str) -> None:
        if self._studies is None:
            self._studies = [r for r in (_read(i, self.root) for i in rec.list_study_ids(self.root))
                             if r is not None and r.get("state") == "running" and r.get("id") != study_id]
        if any(ref == e.get("run") for other in self._studies for e in other.get("runs") or []):
            return  # another study waits for it
        with contextlib.suppress(UserError, OSError):
            api.cancel(ref, self.root)


def tag(folder: Path, study_id: str) -> None:
    """Add a study to a run folder's studies.json (under the run folder's lock)."""
    with contextlib.suppress(OSError, records.LockTimeout):
        with records.lock(folder):
            tags = rec.read_tags(folder)
            if study_id not in tags:
                atomic_write_json(folder / rec.TAGS_FILE, sorted({*tags, study_id}))


# --- studies in a workspace ----------------------------------------------------------------------------


def _read(study_id: str, root: Path) -> dict | None:
    data, _problem = rec.read_record(rec.study_dir(study_id, root))
    return data


def resolve_study_id(text: str, home: str | os.PathLike | None = None) -> str:
    """An exact study id, or a unique start or end of one (at least 4 characters)."""
    text = (text or "").strip()
    root = home_dir(home)
    if rec.is_study_id(text):
        if (rec.study_dir(text, root) / rec.STUDY_FILE).is_file():
            return text
        raise UnknownStudy(f"no study {text} in {root}")
    if len(text) >= 4:
        hits = [i for i in rec.list_study_ids(root) if i.startswith(text) or i.endswith(text)
                or i[2:].startswith(text)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UnknownStudy(f"{text!r} matches {len(hits)} studies ({', '.join(hits[:3])}, ...); give more of it")
    raise UnknownStudy(f"no study {api.safe_name(text)!r} in {root} (list them with: python -m compression jobs)")


def submit_study(spec: StudySpec | dict, home: str | os.PathLike | None = None,
                 base_dir: str | os.PathLike | None = None) -> str:
    """Create a study and start its first runs; returns its id at once. RecipeError for a bad spec;
    QueueError when the queue cannot be reached (the study stays and goes on when it can)."""
    if isinstance(spec, dict):
        spec = parse_spec(spec, base_dir)
    root = home_dir(home)
    cost = study_cost(spec)
    parent = rec.studies_dir(root)
    for _ in range(10):
        study_id = rec.new_study_id()
        tmp = parent / f".new-{study_id}"
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        try:
            atomic_write_json(tmp / "spec.json", spec.to_dict(), fsync=True)
            rec.write_record(tmp, rec.new_record(study_id, spec, cost), fsync=True)
            os.rename(tmp, parent / study_id)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        break
    else:  # pragma: no cover - 10 id collisions
        raise RuntimeError("could not create a study folder")
    rec.log(parent / study_id, f"submitted {spec.kind} study {study_id} ({api.safe_name(spec.name)}): {cost.text}")
    advance_study(study_id, root, raise_queue_errors=True)
    return study_id


def advance_study(study_id: str, home: str | os.PathLike | None = None, raise_queue_errors: bool = False) -> dict | None:
    """Move the study on as far as its ended runs allow (nothing if another process is doing it); its record."""
    root = home_dir(home)
    folder = rec.study_dir(study_id, root)
    try:
        fd = try_flock(folder / LOCK)
    except OSError:
        return _read(study_id, root)
    if fd is None:
        return _read(study_id, root)
    try:
        record, _ = rec.read_record(folder)
        if record is None or record.get("state") != "running":
            return record
        try:
            step = advance(record, QueueBackend(root))
        except Exception as e:  # noqa: BLE001 - e.g. the queue is unreachable: try again at the next read
            if raise_queue_errors:
                raise
            rec.log(folder, f"could not move on: {type(e).__name__}: {e}".splitlines()[0])
            return record
        if step.arrays:
            rec.write_arrays(folder, step.arrays)
        if step.changed:
            rec.write_record(folder, step.record, fsync=step.record["state"] != "running")
        for line in step.events:
            rec.log(folder, line)
        return step.record
    finally:
        os.close(fd)


def advance_all(home: str | os.PathLike | None = None) -> list[str]:
    """Advance every running study (the worker's periodic check); the ids whose record changed."""
    root = home_dir(home)
    changed = []
    for study_id in rec.list_study_ids(root):
        before = _read(study_id, root)
        if before is None or before.get("state") != "running":
            continue
        after = advance_study(study_id, root)
        if after is not None and after != before:
            changed.append(study_id)
    return changed


def get_study(study_id: str, home: str | os.PathLike | None = None, move_on: bool = True) -> dict:
    """The study's record (advanced first, unless ``move_on`` is false). UnknownStudy for an unknown id."""
    root = home_dir(home)
    study_id = resolve_study_id(study_id, root)
    record = advance_study(study_id, root) if move_on else None
    if record is None:
        record, problem = rec.read_record(rec.study_dir(study_id, root))
        if record is None:
            raise UnknownStudy(f"study {study_id}: {problem}")
    return dict(record, folder=str(rec.study_dir(study_id, root)))


def list_studies(home: str | os.PathLike | None = None, move_on: bool = False) -> list[dict]:
    """Every readable study, newest first (advanced first when ``move_on``)."""
    root = home_dir(home)
    out = []
    for study_id in rec.list_study_ids(root):
        record = advance_study(study_id, root) if move_on else _read(study_id, root)
        if record is not None:
            out.append(dict(record, folder=str(rec.study_dir(study_id, root))))
    return out


def cancel_study(study_id: str, home: str | os.PathLike | None = None) -> dict:
    """Cancel a running study and its queued and running runs (those no other running study uses)."""
    root = home_dir(home)
    study_id = resolve_study_id(study_id, root)
    folder = rec.study_dir(study_id, root)
    with locked(folder / LOCK, timeout_s=30):
        record, problem = rec.read_record(folder)
        if record is None:
            raise UnknownStudy(f"study {study_id}: {problem}")
        if record.get("state") != "running":
            return dict(record, folder=str(folder))
        backend = QueueBackend(root)
        cancelled = []
        for e in record["runs"]:
            if e.get("state") in ("queued", "running") or backend.outcome(e["run"]).state in ("queued", "running"):
                backend.cancel(e["run"], study_id)
                cancelled.append(e["run"])
        for e in record["runs"]:
            o = backend.outcome(e["run"])
            e["state"], e["error"] = o.state, o.error
        record.update(state="cancelled", finished_at=now_iso(),
                      message=f"cancelled by user; {len(cancelled)} of its runs asked to stop", error=None)
        rec.write_record(folder, record, fsync=True)
    rec.log(folder, f"CANCELLED by user; runs asked to stop: {', '.join(cancelled) or 'none'}")
    return dict(record, folder=str(folder))


def read_study_log(study_id: str, home: str | os.PathLike | None = None, tail_chars: int | None = None) -> str:
    root = home_dir(home)
    path = rec.study_dir(resolve_study_id(study_id, root), root) / rec.LOG_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return text[-tail_chars:] if tail_chars else text


def wait_study(study_id: str, home: str | os.PathLike | None = None, timeout: float | None = None,
               poll_s: float = 1.0) -> dict:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        record = get_study(study_id, home)
        if record.get("state") != "running" or (deadline is not None and time.monotonic() >= deadline):
            return record
        time.sleep(poll_s)


def study_of_runs(home: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Job id -> the studies using it (from the run folders' studies.json), for the Runs page."""
    root = home_dir(home)
    out = {}
    for study_id in rec.list_study_ids(root):
        record = _read(study_id, root)
        for e in (record or {}).get("runs") or []:
            out.setdefault(e.get("run"), []).append(study_id)
    return out


__all__ = ["QueueBackend", "UnknownStudy", "advance_all", "advance_study", "cancel_study", "get_study",
           "list_studies", "read_study_log", "resolve_study_id", "study_of_runs", "submit_study", "tag", "wait_study"]
