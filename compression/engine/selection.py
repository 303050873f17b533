"""Which layers of a model a method touches."""

from __future__ import annotations

from compression.choices import LayerScope
from compression.errors import RecipeError
from compression.engine.methods.base import LayerSelection


def weight_layers(model) -> list:
    """Layers with a kernel (Dense, Conv2D, DepthwiseConv2D ...), in model order: the ones methods act on."""
    from compression.engine.metrics import kernel_of

    return [layer for layer in model.layers if kernel_of(layer) is not None]


def select(model, selection: LayerSelection, where: str = "layers") -> set[str]:
    """Names of the kernel layers ``selection`` picks; a clear error when it picks none."""
    candidates = weight_layers(model)
    names = [layer.name for layer in candidates]
    if selection.scope == LayerScope.ALL:
        chosen = names
    elif selection.scope == LayerScope.ALL_BUT_FIRST_LAST:
        chosen = names[1:-1]
        if not chosen:
            raise RecipeError(where, f"all_but_first_last leaves nothing: the model has only {len(names)} layers with weights")
    elif selection.scope == LayerScope.TYPES:
        types = {layer.__class__.__name__ for layer in candidates}
        unknown = [t for t in selection.values if t not in types]
        if unknown:
            raise RecipeError(where, f"no layer of type {unknown[0]}; types with weights here: {', '.join(sorted(types))}")
        chosen = [layer.name for layer in candidates if layer.__class__.__name__ in selection.values]
    else:
        unknown = [n for n in selection.values if n not in names]
        if unknown:
            raise RecipeError(where, f"no layer with weights named {unknown[0]!r}; there are: {', '.join(names)}")
        chosen = [n for n in names if n in selection.values]
    if not chosen:
        raise RecipeError(where, "selects no layer with weights")
    return set(chosen)


def check_per_layer_maps(model, step, where: str) -> None:
    """Every per-layer map the step sets names only the model's layers with weights."""
    from compression.engine.methods.base import per_layer_maps

    for name, mapping in per_layer_maps(step).items():
        check_layer_map(model, mapping, f"{where}.{name}")


def check_layer_map(model, mapping: dict, where: str) -> None:
    """A per-layer setting names only layers with weights; one line listing them otherwise."""
    names = [layer.name for layer in weight_layers(model)]
    unknown = [n for n in mapping if n not in names]
    if unknown:
        raise RecipeError(f"{where}.{unknown[0]}",
                          f"no layer with weights named {unknown[0]!r}; the model's layers with weights: {', '.join(names)}")


def chosen_kernels(model, names: set[str]) -> dict:
    """layer name -> kernel values (numpy) of the chosen layers with weights, in model order."""
    from compression.engine.metrics import kernel_of

    return {layer.name: kernel_of(layer).numpy() for layer in weight_layers(model) if layer.name in names}
