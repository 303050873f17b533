"""The registry of exporters (their declarations): every module here that defines ``EXPORTER``
is one; a plug-in elsewhere calls ``register``. Each has a writer of the same key in
compression.engine.exporters (checked by a contract test). No TensorFlow.
"""

from __future__ import annotations

from compression.recipe.exporter import Accounting, Exporter, SizeFigure
from compression.recipe.registry import Registry


def _check(exporter: Exporter) -> None:
    if not getattr(exporter, "key", "") or not exporter.key.isidentifier():
        raise ValueError(f"an exporter needs a key that is an identifier, not {getattr(exporter, 'key', None)!r}")


_REGISTRY: Registry[Exporter] = Registry(__name__, __path__, "EXPORTER", Exporter, key=lambda e: e.key, check=_check)
register = _REGISTRY.register
unregister = _REGISTRY.unregister
all_exporters = _REGISTRY.all
find = _REGISTRY.find


def get(key: str) -> Exporter:
    exporter = _REGISTRY.find(key)
    if exporter is None:
        raise KeyError(f"no exporter {key!r}; known: {', '.join(_REGISTRY.keys())}")
    return exporter


def primary() -> Exporter:
    return next(e for e in all_exporters() if e.primary)


def for_recipe(recipe) -> list[Exporter]:
    """The exporters a run of ``recipe`` writes, in order: those that apply and whose source is written."""
    out: list[Exporter] = []
    for e in all_exporters():
        if e.applies(recipe) and (e.source is None or any(o.key == e.source for o in out)):
            out.append(e)
    return out


def file_names() -> dict[str, str]:
    """artifact key -> file name, for every registered exporter."""
    return {e.key: e.file_name for e in all_exporters()}


__all__ = ["Accounting", "Exporter", "SizeFigure", "all_exporters", "file_names", "find", "for_recipe", "get", "primary",
           "register", "unregister"]
