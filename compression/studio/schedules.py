"""Pruning schedules against the amount of data: steps per epoch, and what cannot work.

Shared by the Pipeline page's live checks, the presets and the health check of finished runs.
TensorFlow-free and Streamlit-free.
"""

from __future__ import annotations

import math

from compression.engine.methods.prune import schedule_plan
from compression.errors import RecipeError
from compression.recipe import Recipe


def steps_per_epoch(n_train: int | None, batch_size: int, max_train_samples: int | None = None) -> int | None:
    if not n_train:
        return None
    n = min(n_train, max_train_samples) if max_train_samples else n_train
    return max(1, math.ceil(n / batch_size))


def schedule_warnings(recipe: Recipe, steps_per_epoch_fn) -> list[str]:
    """Sentences about pruning schedules that cannot work as written for this much data.

    ``steps_per_epoch_fn(batch_size)`` gives the optimizer steps per epoch (None if unknown).
    The sentences come from the engine's own ``schedule_plan``: what it says here is what
    the run will do.
    """
    out = []
    for i, step in enumerate(recipe.steps, start=1):
        if step.method != "prune":
            continue
        spe = steps_per_epoch_fn(step.batch_size) if steps_per_epoch_fn else None
        if not spe:
            continue
        try:
            plan = schedule_plan(step, spe, f"steps[{i - 1}]")
        except RecipeError as e:
            out.append(f"Step {i} (prune) cannot run on this data: {e.message}.")
            continue
        for note in plan.notes:
            out.append(f"Step {i} (prune) does not fit this data ({plan.total_steps} optimizer steps), so the run "
                       f"will adjust it: {note}.")
    return out
