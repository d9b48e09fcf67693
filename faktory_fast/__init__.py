"""faktory_fast: a fast, wire-compatible Faktory server."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any

__version__ = "0.1.0"
# The version we report to clients and in INFO: the Faktory release whose protocol we speak.
FAKTORY_VERSION = "1.10.0"

#: Modules of the hot path that setup.py also compiles with Cython, as they are (with the
#: types of their ``.pxd``); the ``.py`` stays the reference and the fallback.
COMPILED = ("aredis", "jobs", "lifecycle", "server", "store")
#: Set (to anything) to run without compiled code: these modules and the codecs from source.
PURE_ENV = "FAKTORY_FAST_PURE"


class _SourceWhenAsked(importlib.abc.MetaPathFinder):
    """Imports the ``.py`` of a compiled module under PURE_ENV, or when the build is older
    than its source (an edit since the last ``make build`` must not run stale code)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in COMPILED:
            return None
        here = os.path.dirname(os.path.abspath(__file__))
        source = os.path.join(here, name + ".py")
        if not os.environ.get(PURE_ENV):
            built = [os.path.join(here, name + suffix)
                     for suffix in importlib.machinery.EXTENSION_SUFFIXES]
            times = [os.path.getmtime(b) for b in built if os.path.exists(b)]
            if not times or max(times) >= os.path.getmtime(source):
                return None  # the usual import: the built module if there is one
        return importlib.util.spec_from_file_location(fullname, source)


sys.meta_path.insert(0, _SourceWhenAsked())


def hot_path() -> str:
    """"cython" when the compiled hot path is what gets imported here, else "python"."""
    for name in COMPILED:
        spec = importlib.util.find_spec(f"{__name__}.{name}")
        if spec is None or not spec.origin or spec.origin.endswith(".py"):
            return "python"
    return "cython"
