"""Faktory client-command framing and reply serializers: the compiled codec if built, else Python.

``IMPLEMENTATION`` is ``"cython"`` or ``"python"``; ``cython_impl`` (None when not built) and
``python_impl`` are the two modules, so tests and benchmarks can pick either.
"""
from __future__ import annotations

from types import ModuleType

from faktory_fast import wire_py as python_impl

cython_impl: ModuleType | None
try:
    from faktory_fast import _wire as cython_impl
except ImportError:  # not built (no compiler/Cython, or FAKTORY_FAST_NO_EXT)
    cython_impl = None

if cython_impl is not None:
    from faktory_fast._wire import *  # noqa: F401,F403
    IMPLEMENTATION = "cython"
else:
    from faktory_fast.wire_py import *  # noqa: F401,F403
    IMPLEMENTATION = "python"

from faktory_fast.wire_py import __all__ as _names

__all__ = [*_names, "IMPLEMENTATION", "cython_impl", "python_impl"]
