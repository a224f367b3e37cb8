"""The one process-wide cache of loaded models (deep ensembles, tabular models alike).

Keys say exactly what was loaded (the file, its sha256 and modification time, the device), so
a retrained or replaced model is loaded again instead of served stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")


class ModelCache:
    """Loaded models, most recently used last; thread-safe; at most ``max_models``."""

    def __init__(self, max_models: int = 8) -> None:
        self.max_models = max_models
        self._models: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a model was read from disk (tests check warmth)

    def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        """The model cached under ``key``, else ``load()`` (outside the lock), cached."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        value = load()
        with self._lock:
            self.loads += 1
            self._models[key] = value
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODEL_CACHE = ModelCache()
