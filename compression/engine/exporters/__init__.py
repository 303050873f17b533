"""The registry of exporters: every module here that defines ``EXPORTER`` is one.

Adding an artifact format is writing one module (and its tests). Importing this package
imports no TensorFlow; an exporter imports it inside ``write``/``measure``.
"""

from __future__ import annotations

from compression.engine.exporters.base import ExportContext, Exporter
from compression.engine.registry import Registry

_REGISTRY: Registry[Exporter] = Registry(__name__, __path__, "EXPORTER", Exporter, key=lambda e: e.key)
register = _REGISTRY.register
unregister = _REGISTRY.unregister
all_exporters = _REGISTRY.all


def get(key: str) -> Exporter:
    exporter = _REGISTRY.find(key)
    if exporter is None:
        raise KeyError(f"no exporter {key!r}; known: {', '.join(_REGISTRY.keys())}")
    return exporter


def primary() -> Exporter:
    return next(e for e in all_exporters() if e.primary)


def file_names() -> dict[str, str]:
    """artifact key -> file name, for every registered exporter."""
    return {e.key: e.file_name for e in all_exporters()}


__all__ = ["ExportContext", "Exporter", "all_exporters", "file_names", "get", "primary", "register", "unregister"]
