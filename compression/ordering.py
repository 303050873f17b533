"""Order is data: which method may follow which, and which variant each step runs as.

Each method declares its ordering facts (compression/engine/methods/): which earlier
methods' work it undoes, which it can preserve (and what is lost when told not to), and
which variant it runs as given what is still intact. The planner below only reads those
facts, so a new method brings its own rules. The rules follow tfmot's collaborative
optimisation: prune, then cluster, then quantize, each stage keeping what came before.
No TensorFlow here, so the dashboard can explain a recipe live while the user builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compression.engine import methods
from compression.errors import RecipeError


@dataclass(frozen=True)
class PlannedStep:
    method: str
    variant: str
    description: str
    warnings: list[str] = field(default_factory=list)


def recommended_order() -> list[str]:
    return [m.name for m in methods.all_methods()]


def plan(recipe) -> list[PlannedStep]:
    """The variant of every step, and what an unsafe order would undo.

    Raises RecipeError for an unknown method, a method given twice, or an order that
    undoes earlier work, unless the recipe sets allow_unsafe_order (then each such step
    carries a warning).
    """
    planned: list[PlannedStep] = []
    intact: set[str] = set()  # earlier methods whose effect is still in the model
    seen: set[str] = set()
    for i, step in enumerate(recipe.steps):
        where = f"steps[{i}].method"
        method = methods.get(step.method, where)
        if method.name in seen:
            raise RecipeError(where, f"{method.name} appears twice; each method may appear once")
        undone = [e for e in sorted(intact) if e in method.undoes]
        warnings = [method.undoes[e] for e in undone]
        if warnings and not recipe.allow_unsafe_order:
            raise RecipeError(
                where,
                f"{method.name} after {', '.join(undone)} is refused: {warnings[0]}. "
                f"Put it earlier (order: {', '.join(recommended_order())}) or set allow_unsafe_order to see the effect",
            )
        intact -= set(method.undoes)
        if not getattr(step, "preserve", True):
            lost = [e for e in sorted(intact) if e in method.preserves]
            if lost and not recipe.allow_unsafe_order:
                raise RecipeError(
                    f"steps[{i}].preserve",
                    f"false is refused: {method.preserves[lost[0]]}. "
                    "Set it to true, or set allow_unsafe_order to see the effect",
                )
            warnings += [method.preserves[e] for e in lost]
            intact -= set(lost)
        variant = method.variant(step, frozenset(intact))
        kept = [earlier.target_text for earlier in recipe.steps[:i]
                if earlier.method in intact and earlier.method in method.preserves and earlier.target_text]
        planned.append(PlannedStep(method.name, variant, method.describe(step, variant, kept), warnings))
        intact.add(method.name)
        seen.add(method.name)
    return planned
