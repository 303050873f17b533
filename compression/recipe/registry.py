"""The registry mechanism every extension point shares: method and exporter declarations,
their executors in the engine, and study kinds.

Every module of a package that defines the registry's attribute (``METHOD``, ``EXPORTER``,
``EXECUTOR``, ``STUDY``) as an instance of its kind is registered the first time the registry
is read; ``register`` adds one from anywhere else (a plug-in module, a test). No TensorFlow.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, package: str, path, attribute: str, kind: type, key: Callable[[T], str],
                 check: Callable[[T], None] | None = None):
        self.package, self.path, self.attribute, self.kind = package, path, attribute, kind
        self.key, self.check = key, check
        self._items: dict[str, T] = {}
        self._loaded = False

    def _discover(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for info in pkgutil.iter_modules(self.path):
            if info.name.startswith("_") or info.name == "base":
                continue
            item = getattr(importlib.import_module(f"{self.package}.{info.name}"), self.attribute, None)
            if isinstance(item, self.kind):
                self.register(item)

    def register(self, item: T, *, replace: bool = False) -> T:
        if not isinstance(item, self.kind):
            raise TypeError(f"{item!r} is not a {self.kind.__module__}.{self.kind.__name__}")
        if self.check is not None:
            self.check(item)
        key = self.key(item)
        if key in self._items and not replace and self._items[key] is not item:
            raise ValueError(f"{self.kind.__name__} {key!r} is already registered")
        self._items[key] = item
        return item

    def unregister(self, key: str) -> None:
        self._items.pop(key, None)

    def all(self) -> list[T]:
        """Every registered item, in rank order (where it usually goes), then by name."""
        self._discover()
        return sorted(self._items.values(), key=lambda item: (getattr(item, "rank", 50), self.key(item)))

    def find(self, key) -> T | None:
        self._discover()
        return self._items.get(key) if isinstance(key, str) else None

    def keys(self) -> list[str]:
        return [self.key(item) for item in self.all()]
