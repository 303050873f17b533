"""How a parameter is declared, checked, shown and written: the one definition every step,
study spec and widget reads.

A parameter is a dataclass field made with ``param(default, help, lo=, hi=, unit=, ...)``.
Recipe validation, ``python -m compression methods``, the Pipeline page's widgets and the
study specs all read these declarations; nothing else hard-codes a range. No TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Callable

from compression.errors import RecipeError
from compression.recipe.choices import LayerScope

MAX_INT = 2**31 - 1  # larger counts fail inside TensorFlow; refuse them here


@dataclass(frozen=True)
class Param:
    """How one step parameter is checked, shown and explained."""

    kind: str  # float | int | bool | enum | layers | pair | per_layer_float | per_layer_int
    #            study specs also: float_list | name | names | text | object (see parse_value)
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""
    nullable: bool = False  # None allowed (and means what the help says)
    enum: type[StrEnum] | None = None
    advanced: bool = False  # shown folded away in the dashboard
    show_if: tuple[str, str] | None = None  # (field, value): relevant only then (e.g. schedule)
    label: str = ""  # the widget's label, where the field name does not read well
    choices: Callable[[], list[str]] | None = None  # name / names: the allowed values, read when checked
    max_items: int = 64  # float_list / names: the longest list allowed

    def bounds_text(self) -> str:
        if self.kind == "enum" and self.enum is not None:
            return ", ".join(m.value for m in self.enum)
        if self.choices is not None:
            return ", ".join(self.choices())
        if self.lo is None and self.hi is None:
            return ""
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return ("(" if self.lo_open else "[") + f"{lo}, {hi}" + (")" if self.hi_open else "]")

    def describe(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind, "help": self.help}
        if self.label:
            out["label"] = self.label
        if self.unit:
            out["unit"] = self.unit
        if self.lo is not None:
            out["min"] = self.lo
            out["min_open"] = self.lo_open
        if self.hi is not None:
            out["max"] = self.hi
            out["max_open"] = self.hi_open
        if self.enum is not None:
            out["choices"] = [m.value for m in self.enum]
        if self.choices is not None:
            out["choices"] = list(self.choices())
        if self.nullable:
            out["nullable"] = True
        return out


def param(default, help: str, *, kind: str | None = None, **kw) -> Any:
    """A dataclass field declaring a step parameter (see ``Param``)."""
    if kind is None:
        if isinstance(default, bool):
            kind = "bool"
        elif isinstance(default, StrEnum):
            kind, kw["enum"] = "enum", type(default)
        elif isinstance(default, int):
            kind = "int"
        elif isinstance(default, float):
            kind = "float"
        else:
            raise TypeError(f"say the kind of a parameter with default {default!r}")
    return field(default=default, metadata={"param": Param(kind=kind, help=help, **kw)})


def params_of(step_type: type) -> dict[str, Param]:
    """The declared parameters of a step type, in declaration order."""
    return {f.name: f.metadata["param"] for f in fields(step_type) if "param" in f.metadata}


# --- checking values ----------------------------------------------------------------------------


MAX_WHOLE = 10**15  # no count in a recipe is larger; floats as large as 1e300 included


def check_int(value, where: str, lo: float | None = None, hi: float | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(where, f"{_short(value)} is not a whole number")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise RecipeError(where, f"{_short(value)} is not a whole number")
    if abs(value) > MAX_WHOLE:  # 1e300 is a float that is whole: capped like any integer
        raise RecipeError(where, f"{value:g} is far too large (at most {MAX_WHOLE:.0e})")
    value = int(value)
    rng = f" (allowed {'' if lo is None else int(lo)}..{'' if hi is None else int(hi)})"
    if lo is not None and value < lo:
        raise RecipeError(where, f"{value} is below the minimum {int(lo)}{rng}")
    if hi is not None and value > hi:
        raise RecipeError(where, f"{value} is above the maximum {int(hi)}{rng}")
    return value


def check_float(value, where: str, p: Param) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(where, f"{_short(value)} is not a number")
    if isinstance(value, int) and abs(value) > MAX_WHOLE:
        raise RecipeError(where, f"{value:g} is far too large (at most {MAX_WHOLE:.0e})")
    value = float(value)
    if not math.isfinite(value):
        raise RecipeError(where, f"{value} is not a finite number")
    lo_bad = p.lo is not None and (value <= p.lo if p.lo_open else value < p.lo)
    hi_bad = p.hi is not None and (value >= p.hi if p.hi_open else value > p.hi)
    if lo_bad or hi_bad:
        raise RecipeError(where, f"{value:g} is outside {p.bounds_text()}")
    return value


def check_enum(enum: type[StrEnum], value, where: str):
    try:
        return enum(value)
    except (ValueError, TypeError):
        allowed = ", ".join(m.value for m in enum)
        raise RecipeError(where, f"{_short(value)} is not one of: {allowed}") from None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class LayerSelection:
    """Which layers a method touches. Layers without a kernel are never touched."""

    scope: LayerScope = LayerScope.ALL
    values: tuple[str, ...] = ()  # layer types (e.g. "Dense") or layer names

    @classmethod
    def parse(cls, data, where: str) -> "LayerSelection":
        if isinstance(data, LayerSelection):
            return data
        if data is None:
            return cls()
        if isinstance(data, str):
            scope = check_enum(LayerScope, data, where)
            if scope in (LayerScope.TYPES, LayerScope.NAMES):
                raise RecipeError(where, f'write {{"{scope.value}": [...]}} to choose layers by {scope.value[:-1]}')
            return cls(scope)
        if isinstance(data, dict) and len(data) == 1:
            key, values = next(iter(data.items()))
            scope = check_enum(LayerScope, key, where)
            if scope not in (LayerScope.TYPES, LayerScope.NAMES):
                raise RecipeError(where, f'"{key}" takes no list; write "{key}"')
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, (list, tuple)) or not values or not all(
                isinstance(v, str) and v and len(v) <= 200 for v in values
            ) or len(values) > 1000:
                raise RecipeError(where, f"{key} needs a non-empty list of layer {key}")
            return cls(scope, tuple(values))
        raise RecipeError(
            where, 'must be "all", "all_but_first_last", {"types": [...]} or {"names": [...]}'
        )

    def to_json(self):
        if self.scope in (LayerScope.TYPES, LayerScope.NAMES):
            return {self.scope.value: list(self.values)}
        return self.scope.value

    def choose(self, layers: list[tuple[str, str]], where: str = "layers") -> set[str]:
        """Names of the layers this selection picks from ``layers``: (name, class name) of every layer
        with weights, in model order; RecipeError (one line) when it picks none."""
        names = [name for name, _type in layers]
        if self.scope == LayerScope.ALL:
            chosen = names
        elif self.scope == LayerScope.ALL_BUT_FIRST_LAST:
            chosen = names[1:-1]
            if not chosen:
                raise RecipeError(where, f"all_but_first_last leaves nothing: the model has only {len(names)} layers "
                                         "with weights")
        elif self.scope == LayerScope.TYPES:
            types = {t for _name, t in layers}
            unknown = [t for t in self.values if t not in types]
            if unknown:
                raise RecipeError(where, f"no layer of type {unknown[0]}; types with weights here: "
                                         f"{', '.join(sorted(types))}")
            chosen = [name for name, t in layers if t in self.values]
        else:
            unknown = [n for n in self.values if n not in names]
            if unknown:
                raise RecipeError(where, f"no layer with weights named {unknown[0]!r}; there are: {', '.join(names)}")
            chosen = [n for n in names if n in self.values]
        if not chosen:
            raise RecipeError(where, "selects no layer with weights")
        return set(chosen)

    def describe(self) -> str:
        if self.scope == LayerScope.ALL:
            return "all layers with weights"
        if self.scope == LayerScope.ALL_BUT_FIRST_LAST:
            return "all layers with weights but the first and last"
        kind = "of type" if self.scope == LayerScope.TYPES else "named"
        return f"layers {kind} {', '.join(self.values)}"


def _per_layer(value, where: str, p: Param, one: Callable) -> Any:
    """A number, or {layer name: number}; the names are checked against the model later."""
    if isinstance(value, dict):
        if not value:
            raise RecipeError(where, "an empty map; give a number, or {layer name: number}")
        if len(value) > 1000:
            raise RecipeError(where, "too many layers named")
        out = {}
        for name, v in value.items():
            if not isinstance(name, str) or not name or len(name) > 200:
                raise RecipeError(where, f"{_short(name)} is not a layer name")
            out[name] = one(v, f"{where}.{name}")
        return PerLayer(tuple(sorted(out.items())))
    return one(value, where)


@dataclass(frozen=True)
class PerLayer:
    """A per-layer map of a parameter (hashable, so steps stay frozen)."""

    items: tuple[tuple[str, Any], ...]

    def as_dict(self) -> dict:
        return dict(self.items)


def per_layer_value(value, layer: str, default):
    """The value for ``layer``: a plain number applies to every layer; a map names some layers,
    the others keep ``default`` (the step's declared default)."""
    if isinstance(value, PerLayer):
        return value.as_dict().get(layer, default)
    return value


def per_layer_maps(step) -> dict[str, dict]:
    """The per-layer maps a step sets, from its declarations: parameter name -> {layer: value}."""
    return {name: getattr(step, name).as_dict() for name, p in params_of(type(step)).items()
            if p.kind.startswith("per_layer") and isinstance(getattr(step, name), PerLayer)}


def relevant_fields(step_type: type, data: dict) -> dict:
    """A step dict without the fields its own choices make irrelevant (a parameter declared with
    ``show_if=(field, value)`` where the step's ``field`` is something else: ``target_sparsity`` beside a
    polynomial schedule, ``decay_rate`` without an exponential learning-rate schedule)."""
    declared = params_of(step_type)
    return {k: v for k, v in data.items()
            if k not in declared or declared[k].show_if is None
            or str(data.get(declared[k].show_if[0])) == declared[k].show_if[1]}


def declared_default(step_type: type, name: str):
    """The default a step type declares for ``name`` (what layers a per-layer map leaves out take)."""
    return next(f.default for f in fields(step_type) if f.name == name)


def parse_value(value, where: str, p: Param):
    if value is None:
        if p.nullable:
            return None
        raise RecipeError(where, "must be given (null is not allowed here)")
    if p.kind == "float":
        return check_float(value, where, p)
    if p.kind == "int":
        return check_int(value, where, p.lo, p.hi if p.hi is not None else MAX_INT)
    if p.kind == "bool":
        if not isinstance(value, bool):
            raise RecipeError(where, f"{_short(value)} must be true or false")
        return value
    if p.kind == "enum":
        return check_enum(p.enum, value, where)
    if p.kind == "layers":
        return LayerSelection.parse(value, where)
    if p.kind == "per_layer_float":
        return _per_layer(value, where, p, lambda v, w: check_float(v, w, p))
    if p.kind == "per_layer_int":
        return _per_layer(value, where, p, lambda v, w: check_int(v, w, p.lo, p.hi))
    if p.kind in ("float_list", "name", "names", "text", "object"):
        return _parse_study_value(value, where, p)
    if p.kind == "pair":
        if isinstance(value, str) and ":" in value:
            value = value.split(":")
            try:
                value = [int(x) for x in value]
            except ValueError:
                raise RecipeError(where, f"{_short(value)} is not a pair of whole numbers like [2, 4]") from None
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise RecipeError(where, f"{_short(value)} is not a pair like [2, 4]")
        pair = tuple(check_int(v, f"{where}[{i}]", p.lo, p.hi) for i, v in enumerate(value))
        return pair
    raise AssertionError(f"unknown parameter kind {p.kind}")


def _parse_study_value(value, where: str, p: Param):
    """The kinds study specs add: a list of numbers, a name (or names) from a registry, free text, an object."""
    if p.kind == "float_list":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise RecipeError(where, f"{_short(value)} is not a non-empty list of numbers like [0.5, 0.9]")
        if len(value) > p.max_items:
            raise RecipeError(where, f"{len(value)} values; at most {p.max_items}")
        out = tuple(check_float(v, f"{where}[{i}]", p) for i, v in enumerate(value))
        if len(set(out)) != len(out):
            twice = next(v for v in out if out.count(v) > 1)
            raise RecipeError(where, f"{twice:g} is listed twice")
        return out
    if p.kind in ("name", "names"):
        allowed = list(p.choices()) if p.choices is not None else None
        values = value if p.kind == "names" else [value]
        if p.kind == "names" and isinstance(values, str):
            values = [values]
        if not isinstance(values, (list, tuple)) or not values or len(values) > p.max_items:
            raise RecipeError(where, f"{_short(value)} is not a non-empty list of names (at most {p.max_items})")
        for i, v in enumerate(values):
            at = f"{where}[{i}]" if p.kind == "names" else where
            if not isinstance(v, str) or not v or len(v) > 200 or not v.isprintable():
                raise RecipeError(at, f"{_short(v)} is not a name")
            if allowed is not None and v not in allowed:
                raise RecipeError(at, f"{_short(v)} is not one of: {', '.join(allowed)}")
        if p.kind == "names" and len(set(values)) != len(values):
            raise RecipeError(where, "a name is listed twice")
        return tuple(values) if p.kind == "names" else values[0]
    if p.kind == "text":
        if not isinstance(value, str) or len(value) > 200 or not value.isprintable():
            raise RecipeError(where, f"{_short(value)} is not printable text of at most 200 characters")
        return value
    if isinstance(value, FrozenDict):
        return value
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):  # object
        raise RecipeError(where, f"{_short(value)} is not an object like {{\"epochs\": 2}}")
    return FrozenDict(tuple(sorted(value.items())))


@dataclass(frozen=True)
class FrozenDict:
    """An ``object`` parameter's value (hashable, so specs stay frozen); checked later by whoever reads it."""

    items: tuple[tuple[str, Any], ...]

    def as_dict(self) -> dict:
        return dict(self.items)

    def __hash__(self) -> int:
        import json

        return hash(json.dumps(self.items, sort_keys=True, default=str))


def to_json_value(value):
    if isinstance(value, LayerSelection):
        return value.to_json()
    if isinstance(value, (PerLayer, FrozenDict)):
        return value.as_dict()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


