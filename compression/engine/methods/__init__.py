"""The executors of the declared methods: ``apply`` for each name in compression.recipe.methods.

Every module here that defines ``EXECUTOR`` (an ``Executor``) is found on first use; a
plug-in outside this package calls ``register``. Importing this package imports no
TensorFlow (executors import it inside ``apply``).
"""

from __future__ import annotations

from compression.engine.methods.base import Executor, MethodContext, StageFacts, StepResult
from compression.recipe.registry import Registry


def _check(executor: Executor) -> None:
    if not getattr(executor, "name", "") or not executor.name.isidentifier():
        raise ValueError(f"an executor needs the name of its method, not {getattr(executor, 'name', None)!r}")


_REGISTRY: Registry[Executor] = Registry(__name__, __path__, "EXECUTOR", Executor, key=lambda e: e.name,
                                         check=_check)
register = _REGISTRY.register
unregister = _REGISTRY.unregister
all_executors = _REGISTRY.all
names = _REGISTRY.keys


def get(name: str) -> Executor:
    """The executor of a declared method; a plain error (a bug, not the user's) when there is none."""
    executor = _REGISTRY.find(name)
    if executor is None:
        raise LookupError(f"method {name!r} is declared but has no executor in compression.engine.methods")
    return executor


__all__ = ["Executor", "MethodContext", "StageFacts", "StepResult", "all_executors", "get", "names", "register",
           "unregister"]
