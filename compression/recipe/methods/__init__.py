"""The registry of compression methods (their declarations).

Every module in this package that defines ``METHOD`` (an instance of
``compression.recipe.method.Method``) declares a method; the registry finds them. Recipe
validation, the planner, the health checks, the charts, the command line and the Pipeline
page all read it; an unknown name is an error wherever it appears. Each declared method has
an executor of the same name in ``compression.engine.methods`` (checked by a contract test).
No TensorFlow.
"""

from __future__ import annotations

from compression.errors import RecipeError
from compression.recipe.method import Method, StepConfig
from compression.recipe.registry import Registry


def _check(method: Method) -> None:
    if not getattr(method, "name", "") or not method.name.isidentifier():
        raise ValueError(f"a method needs a name that is an identifier, not {getattr(method, 'name', None)!r}")
    if method.step_type.method != method.name:
        raise ValueError(f"{type(method).__name__}: its step type says method {method.step_type.method!r}, "
                         f"not {method.name!r}")
    if method.preserve_field is not None and method.preserve_field not in {
            f for f in method.step_type.__dataclass_fields__}:
        raise ValueError(f"{method.name}: preserve_field {method.preserve_field!r} is not a step field")


_REGISTRY: Registry[Method] = Registry(__name__, __path__, "METHOD", Method, key=lambda m: m.name, check=_check)
register = _REGISTRY.register  # a module's METHOD is added on first use; plug-ins and tests add their own
unregister = _REGISTRY.unregister
all_methods = _REGISTRY.all
names = _REGISTRY.keys
find = _REGISTRY.find


def get(name, where: str = "method") -> Method:
    """The method called ``name``; RecipeError naming the registered ones otherwise."""
    method = _REGISTRY.find(name)
    if method is None:
        raise RecipeError(where, f"{name!r} is not a method; known: {', '.join(names())}")
    return method


def step_type(name: str, where: str = "method") -> type[StepConfig]:
    return get(name, where).step_type


def variant_label(method: str | None, variant: str | None) -> str:
    """The short label a method declares for a variant ('' for the plain method or an unknown one)."""
    m = _REGISTRY.find(method) if isinstance(method, str) else None
    return m.variant_label(variant) if m is not None else ""


__all__ = ["Method", "StepConfig", "all_methods", "find", "get", "names", "register", "step_type", "unregister",
           "variant_label"]
