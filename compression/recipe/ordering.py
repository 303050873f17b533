"""Order is data: which method may follow which, and which variant each step runs as.

Each method declares (compression/recipe/methods/) the facts it establishes in the model
("sparsity", "clusters", "qat_ranges"), which earlier facts it undoes, which it can preserve
(and what is lost when told not to), and which variant it runs as given the facts still
intact. The planner below only reads those declarations, so a new method brings its own
rules. The rules follow tfmot's collaborative optimisation: prune, then cluster, then
quantize, each stage keeping what came before. No TensorFlow here, so the dashboard can
explain a recipe live while the user builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compression.errors import RecipeError
from compression.recipe import methods


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
    intact: dict[str, int] = {}  # fact -> index of the step that established it (still in the model)
    seen: set[str] = set()
    for i, step in enumerate(recipe.steps):
        where = f"steps[{i}].method"
        method = methods.get(step.method, where)
        if method.name in seen:
            raise RecipeError(where, f"{method.name} appears twice; each method may appear once")
        undone = [fact for fact in intact if fact in method.undoes]
        warnings = [method.undoes[fact] for fact in undone]
        if warnings and not recipe.allow_unsafe_order:
            by = ", ".join(dict.fromkeys(recipe.steps[intact[f]].method for f in undone))
            raise RecipeError(
                where,
                f"{method.name} after {by} is refused: {warnings[0]}. "
                f"Put it earlier (order: {', '.join(recommended_order())}) or set allow_unsafe_order to see the effect",
            )
        for fact in undone:
            del intact[fact]
        if not method.preserving(step):
            lost = [fact for fact in intact if fact in method.preserves]
            if lost and not recipe.allow_unsafe_order:
                raise RecipeError(
                    f"steps[{i}].{method.preserve_field}",
                    f"false is refused: {method.preserves[lost[0]]}. "
                    "Set it to true, or set allow_unsafe_order to see the effect",
                )
            warnings += [method.preserves[fact] for fact in lost]
            for fact in lost:
                del intact[fact]
        variant = method.variant(step, frozenset(intact))
        keepers = dict.fromkeys(intact[f] for f in intact if f in method.preserves)
        kept = [t for t in (methods.get(recipe.steps[k].method).target_text(recipe.steps[k]) for k in keepers) if t]
        planned.append(PlannedStep(method.name, variant, method.describe(step, variant, kept), warnings))
        for fact in method.establishes:
            intact[fact] = i
        seen.add(method.name)
    return planned
