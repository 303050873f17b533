"""Finding the plug-in modules of a package: the method and exporter registries share this.

No TensorFlow: a plug-in module imports it inside its functions.
"""

from __future__ import annotations

import importlib
import pkgutil


def discover(package: str, path, attribute: str, kind: type) -> list:
    """Every ``attribute`` (an instance of ``kind``) defined by a module of ``package``, skipping
    private modules and ``base``."""
    found = []
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        item = getattr(module, attribute, None)
        if isinstance(item, kind):
            found.append(item)
    return found
