"""Moving a study on: read its runs' states, start what its plan allows, aggregate at the end.

``advance(record, backend)`` is one step, with no waiting: whoever calls it (the worker's periodic
check, a page or command that reads the study, the foreground command in a loop) moves the study
as far as the ended runs allow, so a study never holds a worker slot while its runs train. The
backend starts runs (``submit`` to the queue, or ``run_recipe`` in the foreground) and reports
their state; it also reuses a run whose resolved recipe is identical (``record.recipe_hash``).

A run that failed because its worker died or was shut down is started again (up to
``MAX_ATTEMPTS`` times in all); any other failure, or a run cancelled by someone else, fails the
study with the run's reason. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from compression.errors import RecipeError, UserError
from compression.recipe import Recipe
from compression.store.workspace import now_iso, resolve_recipe_paths
from compression.studies import get
from compression.studies.kind import MAX_RUNS, Outcome, Results
from compression.studies.record import recipe_hash

MAX_ATTEMPTS = 3
RUN_FINAL = ("succeeded", "failed", "cancelled")
# a run that failed for one of these reasons did not fail by itself: its worker went away
WORKER_LOST = ("the worker running this job stopped", "the worker process running this job",
               "the worker was shut down", "the machine running this job restarted", "sent no heartbeat",
               "its worker went on without recording")


class Backend(Protocol):
    def start(self, key: str, recipe: dict, study_id: str) -> tuple[str, bool]:
        """Start (or reuse) a run of ``recipe``; (its reference, whether an existing run was reused)."""

    def outcome(self, ref: str) -> Outcome:
        """The run's state now (key left empty)."""

    def run_dir(self, ref: str) -> Path | None:
        """The run's folder (None when it is gone)."""

    def cancel(self, ref: str, study_id: str) -> None:
        """Cancel the run unless another active study uses it."""


@dataclass
class Step:
    record: dict
    events: list[str] = field(default_factory=list)  # for the study's log
    arrays: dict[str, np.ndarray] | None = None  # the aggregate's arrays, when the study has just succeeded
    started: int = 0  # runs started (or reused) in this step
    changed: bool = False


def normalise(recipe: dict, where: str) -> dict:
    """A planned recipe as the run will record it: validated, paths made absolute, every default filled."""
    try:
        return resolve_recipe_paths(Recipe.from_dict(recipe)).to_dict()
    except RecipeError as e:
        raise RecipeError(where, str(e)) from None


def worker_lost(error: str | None) -> bool:
    return bool(error) and any(text in error for text in WORKER_LOST)


def _finish(step: Step, state: str, message: str, error: str | None = None) -> Step:
    step.record.update(state=state, finished_at=now_iso(), message=message, error=error)
    step.events.append(f"{state.upper()}: {error or message}")
    step.changed = True
    return step


def fail(step: Step, backend: Backend, error: str) -> Step:
    """Fail the study and cancel its runs that are still going (those no other study uses)."""
    for e in step.record["runs"]:
        if e["state"] in ("queued", "running"):
            try:
                backend.cancel(e["run"], step.record["id"])
            except Exception:  # noqa: BLE001 - best effort; the study is failed either way
                pass
    return _finish(step, "failed", f"failed: {error}", error)


def advance(record: dict, backend: Backend) -> Step:
    """One step of a study (see the module's docstring). Returns the new record and what happened."""
    step = Step(record)
    if record.get("state") != "running":
        return step
    try:
        kind = get(record["kind"])
        spec = kind.spec_type.from_dict(record["spec"])
    except UserError as e:
        return fail(step, backend, f"its spec is no longer valid: {e}")
    runs: list[dict] = record["runs"]
    retries: dict = record.setdefault("retries", {})

    # 1. the runs' states
    for e in list(runs):
        if e["state"] not in RUN_FINAL:
            o = backend.outcome(e["run"])
            if (o.state, o.error) != (e["state"], e.get("error")):
                step.changed = True
                if o.state == "succeeded":
                    step.events.append(f"run {e['label']} ({e['run']}) succeeded")
            e["state"], e["error"] = o.state, o.error
        if e["state"] == "failed" and worker_lost(e.get("error")) and retries.get(e["key"], 1) < MAX_ATTEMPTS:
            retries[e["key"]] = retries.get(e["key"], 1) + 1
            runs.remove(e)  # planned again below, as a new run
            step.changed = True
            step.events.append(f"run {e['label']} ({e['run']}) lost its worker ({e['error']}); starting it again "
                               f"(attempt {retries[e['key']]} of {MAX_ATTEMPTS})")
        elif e["state"] in ("failed", "cancelled"):
            how = "was cancelled" if e["state"] == "cancelled" else "failed"
            return fail(step, backend, f"run {e['label']} ({e['run']}) {how}: {e.get('error') or 'no reason recorded'}")

    # 2. what the plan allows now
    outcomes = {e["key"]: Outcome(e["key"], e["state"], backend.run_dir(e["run"]), e.get("error"), e["run"])
                for e in runs}
    results = Results(outcomes)
    try:
        planned = kind.plan(spec, results)
    except UserError as err:
        return fail(step, backend, str(err))
    if len(planned) > MAX_RUNS:
        return fail(step, backend, f"it would run {len(planned)} runs; at most {MAX_RUNS} (fewer layers or levels)")
    known = {e["key"] for e in runs}
    for p in planned:
        if p.key in known:
            continue
        try:
            recipe = normalise(p.recipe, p.key)
        except UserError as err:
            return fail(step, backend, f"run {p.label} cannot start: {err}")
        ref, reused = backend.start(p.key, recipe, record["id"])
        o = backend.outcome(ref)
        runs.append({"key": p.key, "label": p.label, "role": p.role, "run": ref, "state": o.state, "error": o.error,
                     "recipe_hash": recipe_hash(recipe), "reused": reused})
        known.add(p.key)
        step.started += 1
        step.changed = True
        step.events.append(f"run {p.label}: {'reusing' if reused else 'started'} {ref}")
        if o.state in ("failed", "cancelled") and not worker_lost(o.error):
            return fail(step, backend, f"run {p.label} ({ref}) {o.state}: {o.error or 'no reason recorded'}")

    # 3. progress, and the aggregate once every planned run has succeeded
    done = sum(e["state"] == "succeeded" for e in runs)
    active = sum(e["state"] in ("queued", "running") for e in runs)
    cost = record.get("cost") or {}
    planned_total = max(int(cost.get("runs") or 0), len(runs))
    progress = {"done": done, "planned": planned_total, "active": active}
    if progress != record.get("progress"):
        record["progress"] = progress
        step.changed = True
    if step.started == 0 and runs and done == len(runs):
        try:
            agg = kind.aggregate(spec, Results(outcomes))
        except UserError as err:
            return fail(step, backend, f"its runs cannot be aggregated: {err}")
        except Exception as err:  # noqa: BLE001 - a damaged run folder must not leave the study running
            return fail(step, backend, f"its runs cannot be aggregated: {type(err).__name__}: {err}")
        record.update(agg.fields)
        step.arrays = agg.arrays
        return _finish(step, "succeeded", f"finished: {done} runs")
    running = sum(e["state"] == "running" for e in runs)
    message = f"{done} of {planned_total} runs done" + (f", {running} running" if running else "") + \
              (f", {active - running} queued" if active - running else "")
    if message != record.get("message"):
        record["message"] = message
        step.changed = True
    return step


__all__ = ["Backend", "MAX_ATTEMPTS", "Step", "advance", "fail", "normalise", "worker_lost"]
