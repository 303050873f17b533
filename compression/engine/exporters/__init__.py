"""The writers of the declared exporters (compression.recipe.exporters): every module here that
defines ``WRITER`` is one; a plug-in elsewhere calls ``register``. Importing this package
imports no TensorFlow; a writer imports it inside ``write``/``measure``.
"""

from __future__ import annotations

from compression.engine.exporters.base import ExportContext, Figures, Writer, Written
from compression.recipe.registry import Registry

_REGISTRY: Registry[Writer] = Registry(__name__, __path__, "WRITER", Writer, key=lambda w: w.key)
register = _REGISTRY.register
unregister = _REGISTRY.unregister
all_writers = _REGISTRY.all
keys = _REGISTRY.keys


def get(key: str) -> Writer:
    writer = _REGISTRY.find(key)
    if writer is None:
        raise LookupError(f"exporter {key!r} is declared but has no writer in compression.engine.exporters")
    return writer


__all__ = ["ExportContext", "Figures", "Writer", "Written", "all_writers", "get", "keys", "register", "unregister"]
