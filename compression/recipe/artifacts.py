"""The run folder's file names, in one place: the engine writes them, the store reads them.

Exporters declare their own files (compression.recipe.exporters); the rest are here.
"""

from __future__ import annotations

from compression.recipe import exporters

RUN_FILES = {
    "keras": "model.keras",  # the final Keras model (no optimizer state)
    "baseline": "baseline.keras",  # the baseline (trained or loaded)
    "baseline_init": "baseline_init.npz",  # a trained baseline's weights before training (lottery tickets)
    "weights": "weights.json",  # histograms and distinct values per stage
    "predictions": "predictions.npz",  # test-split predictions and the changed-sample gallery
    "recipe": "recipe.json",
    "report": "report.json",
}
JOB_FILES = ("status.json", "progress.json", "log.txt", "cancel")  # written by the job system


def file_name(key: str) -> str | None:
    """The file an artifact key names by default (a report's own ``artifacts`` map wins)."""
    return RUN_FILES.get(key) or exporters.file_names().get(key)


def all_file_names() -> dict[str, str]:
    """Every artifact key -> file name: the run files and every registered exporter's."""
    return {**RUN_FILES, **exporters.file_names()}


__all__ = ["JOB_FILES", "RUN_FILES", "all_file_names", "file_name"]
