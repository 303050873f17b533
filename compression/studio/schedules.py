"""What a recipe's steps will change for this much data, said before anything runs.

Shared by the Pipeline page's live checks and the presets. Each method declares its own
notes (``Method.plan_notes``: pruning's schedule against the number of optimizer steps);
this module only asks every step. TensorFlow-free and Streamlit-free.
"""

from __future__ import annotations

from compression.errors import RecipeError
from compression.recipe import methods
from compression.recipe.recipe import Recipe
from compression.recipe.training import steps_per_epoch  # noqa: F401  (re-exported for the pages)


def schedule_warnings(recipe: Recipe, steps_per_epoch_fn) -> list[str]:
    """Sentences about steps that cannot run as written on this much data.

    ``steps_per_epoch_fn(batch_size)`` gives the optimizer steps per epoch (None if unknown).
    The sentences come from each method's own declaration: what it says here is what the run
    will do.
    """
    out = []
    for i, step in enumerate(recipe.steps, start=1):
        spe = steps_per_epoch_fn(step.batch_size) if steps_per_epoch_fn else None
        if not spe:
            continue
        method = methods.get(step.method)
        try:
            notes = method.plan_notes(step, spe, f"steps[{i - 1}]")
        except RecipeError as e:
            out.append(f"Step {i} ({step.method}) cannot run on this data: {e.message}.")
            continue
        for note in notes:
            out.append(f"Step {i} ({step.method}) does not fit this data ({spe * step.epochs} optimizer steps), so "
                       f"the run will adjust it: {note}.")
    return out
