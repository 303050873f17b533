"""Reading a finished run folder, without TensorFlow.

The dashboard's Results and Compare pages (and anything else that wants numbers out of
a run) read ``report.json``, ``weights.json``, ``predictions.npz``, ``recipe.json`` and
``status.json`` through here. Every reader tolerates a missing or broken file: it returns
``None`` (or raises ``ResultsError`` with a one-line message where the caller needs the
file), never a traceback. Only numpy and the standard library are imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compression.errors import UserError


class ResultsError(UserError):
    """A run folder has no usable result (yet)."""


def read_json(path: str | Path) -> Any | None:
    """The JSON content of ``path``, or None when it is missing, half-written or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


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
    except (OSError, ValueError, EOFError):
        return None
    except Exception:  # zipfile.BadZipFile and friends from a corrupt file
        return None


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
        defaults = {"tflite": "model.tflite", "keras": "model.keras", "baseline": "baseline.keras",
                    "weights": "weights.json", "predictions": "predictions.npz", "recipe": "recipe.json",
                    "report": "report.json"}
        name = (self.report.get("artifacts") or {}).get(key) or defaults.get(key)
        if not name:
            return None
        path = (self.run_dir / name).resolve()
        try:
            path.relative_to(self.run_dir.resolve())
        except ValueError:  # a report pointing outside its folder is not followed
            return None
        return path if path.is_file() else None


def load_run(run_dir: str | Path) -> RunResult:
    """Load a run folder. Raises ResultsError when report.json is missing or unreadable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"run folder {run_dir} does not exist")
    report = read_json(run_dir / "report.json")
    if not isinstance(report, dict):
        if (run_dir / "report.json").exists():
            raise ResultsError(f"{run_dir.name}: report.json is not readable JSON")
        raise ResultsError(f"{run_dir.name} has no report yet (the run has not finished successfully)")
    result = RunResult(run_dir=run_dir, report=report)
    result.recipe = read_json(run_dir / "recipe.json") or report.get("recipe")
    result.status = read_json(run_dir / "status.json")
    weights_path = result.artifact("weights")
    result.weights = read_json(weights_path) if weights_path else None
    if not isinstance(result.weights, dict):
        result.weights = None
        result.problems.append("weights.json is missing or unreadable: no weight histograms")
    pred_path = result.artifact("predictions")
    result.predictions = read_predictions(pred_path) if pred_path else None
    if result.predictions is None:
        result.problems.append("predictions.npz is missing or unreadable: no changed-prediction gallery")
    return result


def try_load_run(run_dir: str | Path) -> RunResult | None:
    try:
        return load_run(run_dir)
    except ResultsError:
        return None
