"""The registry of compression methods.

Every module in this package that defines ``METHOD`` (an instance of ``base.Method``) is
a method; the registry finds them, so adding a method is writing one module (and its
tests). Recipe validation, the planner, the pipeline, the command line and the Pipeline
page all read the registry; an unknown name is an error wherever it appears.

Importing this package imports no TensorFlow (methods import tfmot inside ``apply``).
"""

from __future__ import annotations

from compression.engine.registry import discover
from compression.engine.methods.base import Method, StepConfig
from compression.errors import RecipeError

_REGISTRY: dict[str, Method] = {}
_LOADED = False


def _discover() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    found = discover(__name__, __path__, "METHOD", Method)
    for method in sorted(found, key=lambda m: (m.rank, m.name)):
        register(method)


def register(method: Method, *, replace: bool = False) -> Method:
    """Add a method to the registry (a module's ``METHOD`` is added on first use)."""
    if not isinstance(method, Method):
        raise TypeError(f"{method!r} is not a compression.engine.methods.base.Method")
    if not getattr(method, "name", "") or not method.name.isidentifier():
        raise ValueError(f"a method needs a name that is an identifier, not {getattr(method, 'name', None)!r}")
    if method.step_type.method != method.name:
        raise ValueError(f"{type(method).__name__}: its step type says method {method.step_type.method!r}, "
                         f"not {method.name!r}")
    if method.name in _REGISTRY and not replace and _REGISTRY[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    _discover()
    return list(_REGISTRY)


def all_methods() -> list[Method]:
    _discover()
    return list(_REGISTRY.values())


def get(name, where: str = "method") -> Method:
    """The method called ``name``; RecipeError naming the registered ones otherwise."""
    _discover()
    method = _REGISTRY.get(name) if isinstance(name, str) else None
    if method is None:
        raise RecipeError(where, f"{name!r} is not a method; known: {', '.join(_REGISTRY)}")
    return method


def step_type(name: str, where: str = "method") -> type[StepConfig]:
    return get(name, where).step_type


__all__ = ["Method", "StepConfig", "all_methods", "get", "names", "register", "step_type", "unregister"]
