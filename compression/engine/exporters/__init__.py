"""The registry of exporters: every module here that defines ``EXPORTER`` is one.

Adding an artifact format is writing one module (and its tests). Importing this package
imports no TensorFlow; an exporter imports it inside ``write``/``measure``.
"""

from __future__ import annotations

from compression.engine.registry import discover
from compression.engine.exporters.base import ExportContext, Exporter

_REGISTRY: dict[str, Exporter] = {}
_LOADED = False


def _discover() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    found = discover(__name__, __path__, "EXPORTER", Exporter)
    for exporter in sorted(found, key=lambda e: (e.rank, e.key)):
        register(exporter)


def register(exporter: Exporter, *, replace: bool = False) -> Exporter:
    if not isinstance(exporter, Exporter):
        raise TypeError(f"{exporter!r} is not an Exporter")
    if exporter.key in _REGISTRY and not replace and _REGISTRY[exporter.key] is not exporter:
        raise ValueError(f"an exporter with key {exporter.key!r} is already registered")
    _REGISTRY[exporter.key] = exporter
    return exporter


def unregister(key: str) -> None:
    _REGISTRY.pop(key, None)


def all_exporters() -> list[Exporter]:
    _discover()
    return sorted(_REGISTRY.values(), key=lambda e: (e.rank, e.key))


def get(key: str) -> Exporter:
    _discover()
    if key not in _REGISTRY:
        raise KeyError(f"no exporter {key!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def primary() -> Exporter:
    return next(e for e in all_exporters() if e.primary)


def file_names() -> dict[str, str]:
    """artifact key -> file name, for every registered exporter."""
    return {e.key: e.file_name for e in all_exporters()}


__all__ = ["ExportContext", "Exporter", "all_exporters", "file_names", "get", "primary", "register", "unregister"]
