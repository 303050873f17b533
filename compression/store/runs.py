"""The one reader of run folders' results: progress, logs, reports, weights, predictions.

No Streamlit, no TensorFlow, no queue: the dashboard polls these every second or two,
the Results and Compare pages load finished runs through ``load_run``, and tests use them
to watch jobs. Writers (``compression.jobs`` and the engine) write every file atomically,
so a read returns a whole file or ``None``. Every reader tolerates a missing or broken
file. Job records (``status.json``) are read by ``compression.jobs.records``.

Every path taken from a file in a run folder (``report.json``'s ``artifacts``) is
confined to that folder: ``../x`` or an absolute path gives ``None``.

A run is named by its job id (``runs/<id>/`` under the workspace) or by a folder path.
For job records with the worker-liveness check (a ``running`` job whose worker died is
reported ``failed``), use ``compression.jobs.get_job`` / ``list_jobs``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compression.errors import UserError
from compression.recipe.artifacts import file_name
from compression.store.workspace import is_job_id, read_json, run_dir, runs_dir

RunRef = str | os.PathLike


class ResultsError(UserError):
    """A run folder has no usable result (yet)."""


# --- files ----------------------------------------------------------------------------------------


def inside(folder: str | Path, name: Any) -> Path | None:
    """``folder / name`` if ``name`` is a relative path that stays inside ``folder``, else None."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    if Path(name).is_absolute():
        return None
    root = Path(folder).resolve()
    path = (root / name).resolve()
    try:
        path.relative_to(root)
    except ValueError:
        return None
    return path if path != root else None


def read_predictions(path: str | Path) -> dict[str, np.ndarray] | None:
    """predictions.npz as a dict of arrays (no pickles), or None."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            out = {}
            for key in z.files:
                try:
                    out[key] = z[key]
                except ValueError:  # an object array would need pickle: skip it
                    continue
            return out
    except Exception:  # OSError, ValueError, EOFError, zipfile.BadZipFile from a corrupt file
        return None


def resolve(run: RunRef, home: RunRef | None = None) -> Path:
    """A job id (under the workspace) or a folder path, as an absolute folder path."""
    if isinstance(run, str) and is_job_id(run):
        return run_dir(run, home)
    return Path(run).expanduser().absolute()


def list_run_ids(home: RunRef | None = None) -> list[str]:
    """Ids of every run folder in the workspace, newest first."""
    root = runs_dir(home)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted((n for n in names if is_job_id(n)), reverse=True)


def read_progress(run: RunRef, home: RunRef | None = None) -> dict | None:
    """The last progress event the worker wrote (the engine's event dict plus ``time``)."""
    data = read_json(resolve(run, home) / "progress.json")
    return data if isinstance(data, dict) else None


_SECTIONS = ("recipe", "dataset", "baseline", "final", "input", "timing", "versions", "artifacts")


def _dicts(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _metrics(m) -> dict:
    if not isinstance(m, dict):
        return {}
    if "layers" in m and not isinstance(m["layers"], list):
        m = dict(m, layers=[])
    elif isinstance(m.get("layers"), list):
        m = dict(m, layers=_dicts(m["layers"]))
    return m


def tidy_recipe(recipe) -> dict:
    """A recipe dict as a reader of old or damaged runs may take it: a dict whose ``steps`` is a list of dicts."""
    if not isinstance(recipe, dict):
        return {}
    steps = recipe.get("steps")
    return dict(recipe, steps=_dicts(steps if isinstance(steps, list) else [steps] if isinstance(steps, dict) else []))


def tidy_report(report) -> dict:
    """A report.json of the shape every page, chart, health check, bundle and HTML report reads: each
    section a dict (or left out), ``stages``, ``recipe.steps``, layers and architecture rows lists of
    dicts, ``undone`` a list of sentences, class names text. Values inside are left as they are (the
    readers take numbers through ``figures.number``); a hand-edited or damaged report never raises."""
    if not isinstance(report, dict):
        return {}
    out = {k: v for k, v in report.items() if k not in _SECTIONS or isinstance(v, dict)}
    stages = []
    for st in _dicts(report.get("stages")):
        stages.append(dict(st, metrics=_metrics(st.get("metrics"))) if "metrics" in st else st)
    out["stages"] = stages
    if "baseline" in out:
        b = dict(out["baseline"])
        if "metrics" in b:
            b["metrics"] = _metrics(b["metrics"])
        if "architecture" in b:
            b["architecture"] = _dicts(b["architecture"])
        out["baseline"] = b
    if "final" in out:
        out["final"] = _metrics(out["final"])
    if "recipe" in out:
        out["recipe"] = tidy_recipe(out["recipe"])
    if "dataset" in out and "class_names" in out["dataset"]:
        names = out["dataset"]["class_names"]
        out["dataset"] = dict(out["dataset"], class_names=[str(n) for n in names] if isinstance(names, list) else None)
    undone = report.get("undone")
    out["undone"] = [str(u) for u in undone] if isinstance(undone, list) else ([undone] if isinstance(undone, str) else [])
    return out


def read_report(run: RunRef, home: RunRef | None = None) -> dict | None:
    """report.json (tidied: ``tidy_report``), present only once a run has succeeded."""
    data = read_json(resolve(run, home) / "report.json")
    return tidy_report(data) if isinstance(data, dict) else None


def read_log(run: RunRef, home: RunRef | None = None, tail_chars: int | None = None) -> str:
    """The run's log.txt ('' if none yet); only the last ``tail_chars`` characters if given."""
    path = resolve(run, home) / "log.txt"
    try:
        with open(path, "rb") as f:
            if tail_chars:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 4 * tail_chars))
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return ""
    text = data.decode("utf-8", errors="replace")
    return text[-tail_chars:] if tail_chars else text


def artifact_path(run: RunRef, key: str, home: RunRef | None = None, report: dict | None = None) -> Path | None:
    """The file report.json's ``artifacts`` names for ``key`` (e.g. "tflite"), if it exists.

    Confined to the run folder: a name that is absolute or leads out of it gives None.
    """
    folder = resolve(run, home)
    report = read_report(folder) if report is None else report
    artifacts = (report or {}).get("artifacts")
    name = (artifacts if isinstance(artifacts, dict) else {}).get(key) or file_name(key)
    path = inside(folder, name)
    return path if path is not None and path.is_file() else None


# --- finished runs, for the Results and Compare pages ---------------------------------------------


@dataclass
class RunResult:
    """Everything the Results page shows, loaded from one run folder."""

    run_dir: Path
    report: dict
    weights: dict | None = None
    predictions: dict[str, np.ndarray] | None = None
    recipe: dict | None = None
    status: dict | None = None
    problems: list[str] = field(default_factory=list)  # optional files that were missing or broken

    @property
    def name(self) -> str:
        recipe = self.recipe or self.report.get("recipe") or {}
        return str(recipe.get("name") or self.run_dir.name)

    def artifact(self, key: str) -> Path | None:
        """Path of an artifact named in report["artifacts"], if it exists inside the run folder."""
        return artifact_path(self.run_dir, key, report=self.report)


def load_run(run: RunRef, home: RunRef | None = None) -> RunResult:
    """Load a run folder. Raises ResultsError when report.json is missing or unreadable."""
    folder = resolve(run, home)
    if not folder.is_dir():
        raise ResultsError(f"run folder {folder} does not exist")
    report = read_report(folder)
    if report is None:
        if (folder / "report.json").exists():
            raise ResultsError(f"{folder.name}: report.json is not readable JSON")
        raise ResultsError(f"{folder.name} has no report yet (the run has not finished successfully)")
    result = RunResult(run_dir=folder, report=report)
    recipe = read_json(folder / "recipe.json")
    result.recipe = recipe if isinstance(recipe, dict) else report.get("recipe")
    status = read_json(folder / "status.json")
    result.status = status if isinstance(status, dict) else None
    weights_path = result.artifact("weights")
    weights = read_json(weights_path) if weights_path else None
    result.weights = weights if isinstance(weights, dict) else None
    if result.weights is None:
        result.problems.append("weights.json is missing or unreadable: no weight histograms")
    pred_path = result.artifact("predictions")
    result.predictions = read_predictions(pred_path) if pred_path else None
    if result.predictions is None:
        result.problems.append("predictions.npz is missing or unreadable: no changed-prediction gallery")
    return result


def try_load_run(run: RunRef, home: RunRef | None = None) -> RunResult | None:
    try:
        return load_run(run, home)
    except ResultsError:
        return None


__all__ = [
    "ResultsError",
    "RunResult",
    "artifact_path",
    "inside",
    "list_run_ids",
    "load_run",
    "read_json",
    "read_log",
    "read_predictions",
    "read_progress",
    "read_report",
    "resolve",
    "tidy_recipe",
    "tidy_report",
    "try_load_run",
]
