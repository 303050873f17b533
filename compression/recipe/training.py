"""How much training a recipe costs: the one definition of steps per epoch and of training epochs."""

from __future__ import annotations

import math


def steps_per_epoch(n_train: int | None, batch_size: int, max_train_samples: int | None = None) -> int | None:
    """Optimizer steps in one epoch over ``n_train`` samples (capped at ``max_train_samples``);
    None when the number of samples is not known. Keras runs a last, smaller batch: ceil."""
    if not n_train:
        return None
    n = min(n_train, max_train_samples) if max_train_samples else n_train
    return max(1, math.ceil(n / max(1, int(batch_size))))


def training_epochs(recipe) -> int:
    """Epochs of training the recipe costs: the baseline's (when trained) plus every step's."""
    base = recipe.baseline.epochs if recipe.baseline.path is None else 0
    return base + sum(s.epochs for s in recipe.steps)


__all__ = ["steps_per_epoch", "training_epochs"]
