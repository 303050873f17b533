"""Pruning schedules against the amount of data: steps per epoch, and what cannot work.

Shared by the Pipeline page's live checks, the presets and the health check of finished runs.
TensorFlow-free and Streamlit-free.
"""

from __future__ import annotations

import math

from compression.choices import Method
from compression.recipe import Recipe


def steps_per_epoch(n_train: int | None, batch_size: int, max_train_samples: int | None = None) -> int | None:
    if not n_train:
        return None
    n = min(n_train, max_train_samples) if max_train_samples else n_train
    return max(1, math.ceil(n / batch_size))


def schedule_warnings(recipe: Recipe, steps_per_epoch_fn) -> list[str]:
    """Sentences about pruning schedules that cannot work as written for this much data.

    ``steps_per_epoch_fn(batch_size)`` gives the optimizer steps per epoch (None if unknown).
    """
    out = []
    for i, step in enumerate(recipe.steps, start=1):
        if step.method != Method.PRUNE or step.sparsity_m_by_n:
            continue
        spe = steps_per_epoch_fn(step.batch_size) if steps_per_epoch_fn else None
        if not spe:
            continue
        total = spe * step.epochs
        end = step.end_step or total
        if step.begin_step >= total:
            out.append(f"Step {i} (prune) begins at step {step.begin_step} but trains only {total} steps: "
                       "nothing would be pruned. Lower 'Begin step'.")
        elif step.frequency >= end - step.begin_step:
            out.append(f"Step {i} (prune) trains {total} steps but updates the mask every {step.frequency}: sparsity "
                       f"jumps to {step.target:.0%} in one go, with no time to recover. Lower 'Update every' "
                       f"(e.g. {max(1, (end - step.begin_step) // 10)}) or train more epochs.")
        elif step.end_step and step.end_step > total:
            out.append(f"Step {i} (prune) ends its schedule at step {step.end_step} but trains only {total} steps: "
                       f"it stops short of {step.target:.0%}.")
    return out
