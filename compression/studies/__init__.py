"""Studies: the chapter's experiments as records over ordinary runs.

A study is a named experiment on a baseline (a sweep, a layer sensitivity analysis, a lottery
ticket, what compression forgets, robustness) that fans out into ordinary runs, each an ordinary
run folder, and aggregates them into ``study.json``. This layer sits above the run-folder reader
and below the engine: it plans recipes and reads run folders, and imports no TensorFlow and no
queue. The kinds are plug-ins (``compression/studies/kinds/``, one module each) found by the same
registry mechanism as methods; ``driver.advance`` moves a study on whoever calls it (the worker's
periodic check, a reader, the foreground command), through a backend that starts runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from compression.errors import RecipeError
from compression.recipe.registry import Registry
from compression.studies import kinds as _kinds
from compression.studies.kind import MAX_RUNS, Cost, StudyKind, StudySpec


def _check(kind: StudyKind) -> None:
    if not getattr(kind, "name", "") or not kind.name.isidentifier():
        raise ValueError(f"a study kind needs a name that is an identifier, not {getattr(kind, 'name', None)!r}")
    if kind.spec_type.kind != kind.name:
        raise ValueError(f"{type(kind).__name__}: its spec type says kind {kind.spec_type.kind!r}, not {kind.name!r}")


_REGISTRY: Registry[StudyKind] = Registry(_kinds.__name__, _kinds.__path__, "STUDY", StudyKind,
                                          key=lambda k: k.name, check=_check)
register = _REGISTRY.register
unregister = _REGISTRY.unregister
all_kinds = _REGISTRY.all
names = _REGISTRY.keys
find = _REGISTRY.find


def get(name, where: str = "kind") -> StudyKind:
    kind = _REGISTRY.find(name)
    if kind is None:
        raise RecipeError(where, f"{name!r} is not a study kind; known: {', '.join(names())}")
    return kind


def is_spec(data) -> bool:
    """Whether parsed JSON is a study spec (a recipe has no ``kind``)."""
    return isinstance(data, dict) and "kind" in data


def parse_spec(data, base_dir: str | Path | None = None, check_paths: bool = True) -> StudySpec:
    """A validated spec; RecipeError naming the field otherwise. Relative ``dataset.npz`` /
    ``baseline.path`` are taken against ``base_dir`` (the spec file's folder) and must exist."""
    if not isinstance(data, dict):
        raise RecipeError("", "a study spec must be a JSON object with a \"kind\"")
    if "kind" not in data:
        raise RecipeError("kind", f"missing; one of: {', '.join(names())}")
    kind = get(data["kind"])
    data = _absolute(data, base_dir)
    spec = kind.spec_type.from_dict(data)
    runs = kind.cost(spec).runs
    if runs is not None and runs > MAX_RUNS:
        raise RecipeError("", f"this {kind.name} study would run {runs} runs; at most {MAX_RUNS} (fewer levels, "
                              "seeds or rounds)")
    if check_paths:
        from compression.store.workspace import resolve_recipe_paths

        resolve_recipe_paths(spec, base_dir)  # RecipeError naming dataset.npz / baseline.path when missing
    return spec


def _absolute(data: dict, base_dir: str | Path | None) -> dict:
    """The spec with relative ``dataset.npz`` and ``baseline.path`` taken against ``base_dir``."""
    base = Path(base_dir or ".").expanduser().absolute()
    out = dict(data)
    ds, bl = data.get("dataset"), data.get("baseline")
    if isinstance(ds, dict) and isinstance(ds.get("npz"), str) and ds["npz"].strip():
        out["dataset"] = dict(ds, npz=str(base / Path(ds["npz"]).expanduser()))
    if isinstance(bl, dict) and isinstance(bl.get("path"), str) and bl["path"].strip():
        out["baseline"] = dict(bl, path=str(base / Path(bl["path"]).expanduser()))
    return out


def load_spec(path: str | Path) -> StudySpec:
    """A spec from a JSON file (bounded like a recipe file); RecipeError with one line otherwise."""
    from compression.inputs import limits

    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(limits.MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise RecipeError("", f"spec file {path} does not exist") from None
    except OSError as e:
        raise RecipeError("", f"cannot read spec file {path}: {e.strerror or type(e).__name__}") from None
    return parse_spec(loads(raw), path.resolve().parent)


def loads(raw: bytes | str):
    from compression.inputs import limits

    try:
        return limits.loads(raw, "the spec", limits.MAX_RECIPE_BYTES, limits.MAX_RECIPE_DEPTH)
    except limits.LimitError as e:
        raise RecipeError("", str(e)) from None
    except json.JSONDecodeError as e:
        raise RecipeError("", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def cost(spec: StudySpec) -> Cost:
    return get(spec.kind).cost(spec)


def catalogue() -> dict:
    """Every registered kind with its spec fields, from the declarations."""
    return {"kinds": [k.describe() for k in all_kinds()]}


__all__ = ["Cost", "StudyKind", "StudySpec", "all_kinds", "catalogue", "cost", "find", "get", "is_spec", "load_spec",
           "loads", "names", "parse_spec", "register", "unregister"]
