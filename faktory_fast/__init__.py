"""faktory_fast: a fast, wire-compatible Faktory server."""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from typing import Any

__version__ = "0.1.0"
# The version we report to clients and in INFO: the Faktory release whose protocol we speak.
FAKTORY_VERSION = "1.10.0"

#: Modules of the hot path that setup.py also compiles with Cython, as they are (with the
#: types of their ``.pxd``); the ``.py`` stays the reference and the fallback.
COMPILED = ("aredis", "jobs", "lifecycle", "parking", "server", "store")
#: Set (to anything) to run without compiled code: these modules and the codecs from source.
PURE_ENV = "FAKTORY_FAST_PURE"
#: Written by setup.py's build_ext beside the compiled modules: for each one it built, the
#: ``source_digest`` of what it compiled.
BUILD_RECORD = "_compiled.json"


def source_digest(package_dir: str, name: str) -> str:
    """The digest of what a compiled module is built from: its ``.py`` and ``.pxd``.

    setup.py records it for each module it compiles.
    """
    digest = hashlib.sha256()
    for suffix in (".py", ".pxd"):
        path = os.path.join(package_dir, name + suffix)
        if os.path.exists(path):
            with open(path, "rb") as fh:
                digest.update(suffix.encode() + b"\0" + fh.read())
    return digest.hexdigest()


def _recorded(package_dir: str) -> dict[str, str]:
    try:
        with open(os.path.join(package_dir, BUILD_RECORD), "rb") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


class _SourceWhenAsked(importlib.abc.MetaPathFinder):
    """Imports the ``.py`` of a compiled module under PURE_ENV, or when the build was not made
    from the source beside it (an edit since the last ``make build`` must not run stale code).

    The build's record of its sources decides, not file times: pip writes an installed
    package's ``.py`` files after its compiled ones, and a copy may change every time.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in COMPILED:
            return None
        here = os.path.dirname(os.path.abspath(__file__))
        source = os.path.join(here, name + ".py")
        if not os.path.exists(source):
            return None  # shipped compiled only: that is all there is
        if not os.environ.get(PURE_ENV):
            built = any(os.path.exists(os.path.join(here, name + suffix))
                        for suffix in importlib.machinery.EXTENSION_SUFFIXES)
            if not built or _recorded(here).get(name) == source_digest(here, name):
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
