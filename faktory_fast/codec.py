"""Chooses the compiled codec when it is built, else its pure-Python twin (same API and tests)."""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from faktory_fast import PURE_ENV


def select(compiled: str, fallback: ModuleType, namespace: dict[str, Any]) -> None:
    """Fill a selector module's globals with the public names of the chosen implementation.

    Also sets ``IMPLEMENTATION`` ("cython" or "python"), ``cython_impl`` (None when not built)
    and ``python_impl``, so tests and benchmarks can pick either.
    """
    cython_impl: ModuleType | None = None
    if not os.environ.get(PURE_ENV):
        try:
            cython_impl = importlib.import_module(compiled)
        except ImportError:  # not built (no compiler or Cython at install time)
            pass
    chosen = cython_impl or fallback
    namespace.update({name: getattr(chosen, name) for name in fallback.__all__})
    namespace.update(IMPLEMENTATION="cython" if cython_impl else "python",
                     cython_impl=cython_impl, python_impl=fallback)
    namespace["__all__"] = [*fallback.__all__, "IMPLEMENTATION", "cython_impl", "python_impl"]
