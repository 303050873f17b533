"""Which layers of a model a method touches."""

from __future__ import annotations

from compression.engine.metrics import weight_layers
from compression.errors import RecipeError
from compression.recipe.params import LayerSelection, per_layer_maps


def check_flat(model, where: str = "layers") -> None:
    """Methods wrap a model's own layers: a nested model's layers cannot be wrapped, so refuse them
    in one line instead of leaving them silently uncompressed."""
    top = {id(layer) for layer in model.layers} | {id(getattr(layer, "layer", None)) for layer in model.layers}
    nested = [layer.name for layer in weight_layers(model) if id(layer) not in top]
    if nested:
        raise RecipeError(where, f"layer {nested[0]} sits inside a nested model; the methods wrap a model's own "
                                 "layers only: rebuild it as one flat functional model")


def select(model, selection: LayerSelection, where: str = "layers") -> set[str]:
    """Names of the kernel layers ``selection`` picks; a clear error when it picks none."""
    check_flat(model, where)
    return selection.choose([(layer.name, layer.__class__.__name__) for layer in weight_layers(model)], where)


def kernel_infos(model) -> list:
    """Every layer with weights as the TensorFlow-free checks see it (recipe.blocks.KernelInfo), in model order."""
    from compression.engine.metrics import kernel_of
    from compression.recipe.blocks import KernelInfo

    return [KernelInfo(layer.name, layer.__class__.__name__, tuple(int(d) for d in kernel_of(layer).shape))
            for layer in weight_layers(model)]


def check_per_layer_maps(model, step, where: str) -> None:
    """Every per-layer map the step sets names only the model's layers with weights."""
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


def skipped_layers(model, names: set[str], method: str) -> dict[str, str]:
    """Selected layers tfmot's registry leaves alone, with the reason, in model order.

    tfmot 0.8.1 lists DepthwiseConv2D with no prunable or clusterable weights; pruning here
    prunes its depthwise kernel anyway (as a tfmot PrunableLayer), clustering skips it."""
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import (
        ClusteringRegistry,
    )
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    registry = PruneRegistry if method == "prune" else ClusteringRegistry
    out = {}
    for layer in model.layers:
        if layer.name not in names:
            continue
        cls = layer.__class__.__name__
        if method == "prune" and cls == "DepthwiseConv2D":
            continue
        weights = registry._LAYERS_WEIGHTS_MAP.get(layer.__class__)
        if weights is None and not registry.supports(layer):
            out[layer.name] = f"tfmot cannot {method} a {cls} layer"
        elif weights == []:
            why = " (tfmot: unrecoverable accuracy loss)" if method == "cluster" and cls == "DepthwiseConv2D" else ""
            out[layer.name] = f"tfmot does not {method} {cls} kernels{why}"
    return out


def recipe_kernels(recipe) -> list:
    """The layers with weights of a recipe's baseline (recipe.blocks.KernelInfo), without training it: a
    studio architecture is built for the dataset's samples, a model file is loaded. For the checks that need
    kernel shapes before a run (``python -m compression check``)."""
    from compression.engine import models
    from compression.inputs import data

    b = recipe.baseline
    if b.path is not None:
        return kernel_infos(models.load_model(b.path))
    ds = data.load(recipe.dataset)
    if models.needs_channel_axis(b.arch):
        ds = ds.with_channel_axis()
    return kernel_infos(models.build(b.arch, ds.input_shape, ds.num_classes, b.seed))
