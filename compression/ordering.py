"""Order is data: which method may follow which, and which preserving variant each step runs as.

The rules follow tfmot's collaborative optimisation: prune, then cluster, then quantize,
each stage keeping what came before. No TensorFlow here, so the dashboard can explain a
recipe live while the user builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compression.choices import Method, Variant
from compression.errors import RecipeError

# What a later method does to an earlier one's work, in words a user understands.
UNDOES: dict[tuple[Method, Method], str] = {
    (Method.CLUSTER, Method.PRUNE): (
        "pruning after clustering zeroes weights and fine-tunes the rest freely, "
        "so the clusters are lost (many distinct values again)"
    ),
    (Method.QUANTIZE, Method.PRUNE): (
        "pruning after quantization-aware training changes the weights QAT trained for int8 "
        "and drops its learned quantization ranges"
    ),
    (Method.QUANTIZE, Method.CLUSTER): (
        "clustering after quantization-aware training changes the weights QAT trained for int8 "
        "and drops its learned quantization ranges"
    ),
}

# A step that could preserve earlier work but is told not to (preserve: false).
NOT_PRESERVED: dict[tuple[Method, Method], str] = {
    (Method.PRUNE, Method.CLUSTER): (
        "clustering without sparsity preservation moves pruned zeros to the nearest centroid, "
        "so the sparsity is lost"
    ),
    (Method.PRUNE, Method.QUANTIZE): (
        "quantization-aware training without prune preservation lets pruned weights grow back, "
        "so the sparsity is lost"
    ),
    (Method.CLUSTER, Method.QUANTIZE): (
        "quantization-aware training without cluster preservation trains every weight freely, "
        "so the clusters are lost"
    ),
}

VARIANT_TEXT: dict[Variant, str] = {
    Variant.PRUNE: "Pruning",
    Variant.CLUSTER: "Clustering",
    Variant.SPARSITY_PRESERVING_CLUSTER: "Clustering will run sparsity-preserving: zeros stay zero",
    Variant.QAT: "QAT",
    Variant.PQAT: "QAT will run as PQAT (prune-preserving): keeps the sparsity",
    Variant.CQAT: "QAT will run as CQAT (cluster-preserving): keeps the clusters",
    Variant.PCQAT: "QAT will run as PCQAT: keeps the sparsity and the clusters",
}


@dataclass(frozen=True)
class PlannedStep:
    method: Method
    variant: Variant
    description: str
    warnings: list[str] = field(default_factory=list)


def _qat_variant(intact: set[Method]) -> Variant:
    if Method.PRUNE in intact and Method.CLUSTER in intact:
        return Variant.PCQAT
    if Method.PRUNE in intact:
        return Variant.PQAT
    if Method.CLUSTER in intact:
        return Variant.CQAT
    return Variant.QAT


def plan(recipe) -> list[PlannedStep]:
    """The variant of every step, and what an unsafe order would undo.

    Raises RecipeError for an order that undoes earlier work, unless the recipe sets
    allow_unsafe_order (then each such step carries a warning).
    """
    planned: list[PlannedStep] = []
    intact: set[Method] = set()  # earlier methods whose effect is still in the model
    seen: set[Method] = set()
    for i, step in enumerate(recipe.steps):
        method = step.method
        where = f"steps[{i}].method"
        if method in seen:
            raise RecipeError(where, f"{method.value} appears twice; each method may appear once")
        undone = [e for e in sorted(intact) if (e, method) in UNDOES]
        warnings = [UNDOES[(e, method)] for e in undone]
        if warnings and not recipe.allow_unsafe_order:
            raise RecipeError(
                where,
                f"{method.value} after {', '.join(e.value for e in undone)} is refused: {warnings[0]}. "
                "Put it earlier (order: prune, cluster, quantize) or set allow_unsafe_order to see the effect",
            )
        if not getattr(step, "preserve", True):
            lost = [e for e in sorted(intact) if (e, method) in NOT_PRESERVED]
            if lost and not recipe.allow_unsafe_order:
                raise RecipeError(
                    f"steps[{i}].preserve",
                    f"false is refused: {NOT_PRESERVED[(lost[0], method)]}. "
                    "Set it to true, or set allow_unsafe_order to see the effect",
                )
            warnings += [NOT_PRESERVED[(e, method)] for e in lost]
            intact -= set(lost)
        if method == Method.PRUNE:
            variant = Variant.PRUNE
            intact -= {Method.CLUSTER, Method.QUANTIZE}
            text = f"Pruning to {step.target:.0%} sparsity"
        elif method == Method.CLUSTER:
            intact -= {Method.QUANTIZE}
            if Method.PRUNE in intact:
                variant = Variant.SPARSITY_PRESERVING_CLUSTER
                text = f"{VARIANT_TEXT[variant]}; {step.number_of_clusters} clusters"
            else:
                variant = Variant.CLUSTER
                text = f"Clustering into {step.number_of_clusters} clusters per layer"
        else:
            variant = _qat_variant(intact)
            text = VARIANT_TEXT[variant]
            if variant != Variant.QAT:
                keeps = []
                for earlier in recipe.steps[:i]:
                    if earlier.method == Method.PRUNE and Method.PRUNE in intact:
                        keeps.append(f"{earlier.target:.0%} sparsity")
                    if earlier.method == Method.CLUSTER and Method.CLUSTER in intact:
                        keeps.append(f"{earlier.number_of_clusters} clusters")
                text = f"{text.split(':')[0]}: keeps {' and '.join(keeps)}"
            else:
                text = "Quantization-aware training for int8"
        intact.add(method)
        seen.add(method)
        planned.append(PlannedStep(method, variant, text, warnings))
    return planned
