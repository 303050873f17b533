"""The registry of compression methods.

Every module in this package that defines ``METHOD`` (an instance of ``base.Method``) is
a method; the registry finds them, so adding a method is writing one module (and its
tests). Recipe validation, the planner, the pipeline, the command line and the Pipeline
page all read the registry; an unknown name is an error wherever it appears.

Importing this package imports no TensorFlow (methods import tfmot inside ``apply``).
"""

from __future__ import annotations

from compression.engine.methods.base import Method, StepConfig
from compression.engine.registry import Registry
from compression.errors import RecipeError


def _check(method: Method) -> None:
    if not getattr(method, "name", "") or not method.name.isidentifier():
        raise ValueError(f"a method needs a name that is an identifier, not {getattr(method, 'name', None)!r}")
    if method.step_type.method != method.name:
        raise ValueError(f"{type(method).__name__}: its step type says method {method.step_type.method!r}, "
                         f"not {method.name!r}")


_REGISTRY: Registry[Method] = Registry(__name__, __path__, "METHOD", Method, key=lambda m: m.name, check=_check)
register = _REGISTRY.register  # a module's METHOD is added on first use; tests add their own
unregister = _REGISTRY.unregister
all_methods = _REGISTRY.all
names = _REGISTRY.keys


def get(name, where: str = "method") -> Method:
    """The method called ``name``; RecipeError naming the registered ones otherwise."""
    method = _REGISTRY.find(name)
    if method is None:
        raise RecipeError(where, f"{name!r} is not a method; known: {', '.join(names())}")
    return method


def step_type(name: str, where: str = "method") -> type[StepConfig]:
    return get(name, where).step_type


__all__ = ["Method", "StepConfig", "all_methods", "get", "names", "register", "step_type", "unregister"]
