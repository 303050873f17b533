"""The baseline's layers with weights, known before anything runs, and a recipe's layer names
checked against them before a job is queued.

A step's per-layer map (``final_sparsity: {"fc1": 0.9}``) or layer selection (``{"names":
["fc1"]}``, ``{"types": ["Conv2D"]}``) that names a layer the baseline lacks would otherwise fail
only after the baseline has trained. ``check_layer_names`` refuses it up front, with the engine's
own words, for a built-in architecture (its layers are fixed: ``arch_layers``) and for a model file
(its config lists them: ``file_layers``). TensorFlow-free; the engine's check still runs in the job.
"""

from __future__ import annotations

from compression.errors import ModelLoadError, RecipeError
from compression.recipe import methods
from compression.recipe.choices import Arch, LayerScope
from compression.recipe.params import per_layer_maps

# Keras layer classes that hold a kernel (engine.metrics.KERNEL_ATTRS: kernel, depthwise_kernel)
KERNEL_CLASSES = {
    "Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
}
MOBILENET_V2_EXPANDS = (False, True, True, True, True, True, True)  # block1 has expansion 1 (engine.models)


def arch_layers(arch: Arch | str) -> list[tuple[str, str]]:
    """(name, class) of every layer with weights a built-in architecture has, in model order
    (engine.models.build; tests/test_models.py builds each one and compares)."""
    arch = Arch(arch)
    if arch == Arch.LENET_300_100:
        dense = ["fc1", "fc2"]
    elif arch == Arch.DENSE_REDUNDANT:
        dense = [f"fc{i}" for i in range(1, 11)]
    elif arch == Arch.LENET_5:
        return [("conv1", "Conv2D"), ("conv2", "Conv2D"), ("fc1", "Dense"), ("fc2", "Dense"), ("output", "Dense")]
    elif arch == Arch.LENET_5_CAFFE:
        return [("conv1", "Conv2D"), ("conv2", "Conv2D"), ("fc1", "Dense"), ("output", "Dense")]
    elif arch == Arch.RESNET_20:
        out = [("stem_conv", "Conv2D")]
        for stage in (1, 2, 3):
            for block in (1, 2, 3):
                p = f"s{stage}b{block}"
                out.append((f"{p}_conv1", "Conv2D"))
                if stage > 1 and block == 1:
                    out.append((f"{p}_proj", "Conv2D"))
                out.append((f"{p}_conv2", "Conv2D"))
        return out + [("output", "Dense")]
    elif arch == Arch.MOBILENET_V2:
        out = [("stem_conv", "Conv2D")]
        for i, expand in enumerate(MOBILENET_V2_EXPANDS, 1):
            if expand:
                out.append((f"block{i}_expand", "Conv2D"))
            out += [(f"block{i}_dw", "DepthwiseConv2D"), (f"block{i}_project", "Conv2D")]
        return out + [("head_conv", "Conv2D"), ("output", "Dense")]
    else:  # an architecture this table does not know: no check up front
        return []
    return [(n, "Dense") for n in dense] + [("output", "Dense")]


def file_layers(path) -> list[tuple[str, str]] | None:
    """(name, class) of the layers with weights a model file's config declares, as the engine will see
    them; None where that is not certain (a file that cannot be read here, nested models whose names
    the Keras 3 conversion may change)."""
    from compression.inputs import modelfile

    try:
        config, version = modelfile.read_config(path)
        modelfile.check_config(config, str(path))
    except ModelLoadError:
        return None  # the job's own inspection says what is wrong with the file
    keras3 = str(version).startswith("3")
    out, seen = [], set()
    for layer in modelfile.layer_configs(config):
        cls = layer.get("class_name")
        cfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        name = cfg.get("name")
        if not isinstance(name, str):
            continue
        if cls in modelfile.MODEL_CLASSES:
            return None  # nested models: refused by the engine, or renamed when converted
        if name in seen:
            return None
        seen.add(name)
        if cls not in KERNEL_CLASSES:
            continue
        if keras3 and cls == "SeparableConv2D":  # converted into a depthwise and a pointwise layer
            out += [(f"{name}_depthwise", "DepthwiseConv2D"), (name, "Conv2D")]
        else:
            out.append((name, cls))
    return out or None


def baseline_layers(recipe) -> list[tuple[str, str]] | None:
    """The recipe's baseline's layers with weights, or None where they are not known before it runs."""
    if recipe.baseline.path:
        return file_layers(recipe.baseline.path)
    if recipe.baseline.arch is not None:
        return arch_layers(recipe.baseline.arch) or None
    return None


def needs_layer_check(recipe) -> bool:
    """Whether any step names layers (a per-layer map, a names/types selection, all_but_first_last)."""
    return any(per_layer_maps(step) or step.layers.scope != LayerScope.ALL for step in recipe.steps)


def report_layers(report: dict) -> list[tuple[str, str]]:
    """(name, class) of the layers with weights a baseline run's report.json lists."""
    arch = ((report or {}).get("baseline") or {}).get("architecture") or []
    return [(str(a.get("name")), str(a.get("type"))) for a in arch
            if isinstance(a, dict) and a.get("type") in KERNEL_CLASSES and a.get("params")]


def check_layer_names(recipe, layers: list[tuple[str, str]] | None = None, maps: bool = True) -> None:
    """Refuse (RecipeError, the engine's words) a step that names layers the baseline does not have:
    ``layers`` if given, else ``baseline_layers(recipe)``. ``maps=False`` checks the layer selections only.

    Steps after one whose method renames layers are left to the engine."""
    if not needs_layer_check(recipe):
        return
    layers = layers if layers is not None else baseline_layers(recipe)
    if not layers:
        return
    names = [n for n, _cls in layers]
    types = sorted({c for _n, c in layers})
    for i, step in enumerate(recipe.steps):
        where = f"steps[{i}]"
        sel = step.layers
        if sel.scope == LayerScope.ALL_BUT_FIRST_LAST and len(names) < 3:
            raise RecipeError(f"{where}.layers", f"all_but_first_last leaves nothing: the model has only {len(names)} "
                                                 "layers with weights")
        if sel.scope == LayerScope.TYPES:
            unknown = [t for t in sel.values if t not in types]
            if unknown:
                raise RecipeError(f"{where}.layers", f"no layer of type {unknown[0]}; types with weights here: "
                                                     f"{', '.join(types)}")
        if sel.scope == LayerScope.NAMES:
            unknown = [n for n in sel.values if n not in names]
            if unknown:
                raise RecipeError(f"{where}.layers", f"no layer with weights named {unknown[0]!r}; there are: "
                                                     f"{', '.join(names)}")
        for field, mapping in (per_layer_maps(step) if maps else {}).items():
            unknown = [n for n in mapping if n not in names]
            if unknown:
                raise RecipeError(f"{where}.{field}.{unknown[0]}", f"no layer with weights named {unknown[0]!r}; "
                                                                  f"the model's layers with weights: {', '.join(names)}")
        method = methods.find(step.method)
        if method is None or method.renames_layers:
            return


__all__ = ["KERNEL_CLASSES", "arch_layers", "baseline_layers", "check_layer_names", "file_layers", "needs_layer_check",
           "report_layers"]
