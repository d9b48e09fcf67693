"""faktory_fast: a fast, wire-compatible Faktory server.

Some of its modules are also compiled by Cython (``COMPILED``); one rule, here, decides whether
the compiled module or its ``.py`` is imported (``_SourceWhenAsked``).
"""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__version__ = "0.1.0"
# The version we report to clients and in INFO: the Faktory release whose protocol we speak.
FAKTORY_VERSION = "1.10.0"

#: The modules setup.py also compiles with Cython, typed by the ``<name>.pxd`` beside them. Each
#: ``<name>.py`` is the reference and the fallback; the build is made from ``<name>.pyx`` where
#: there is one (the codecs ``wire`` and ``resp``, written for Cython), else from the ``.py`` as
#: it is. Both are the module ``faktory_fast.<name>``: its importers never choose.
COMPILED = ("wire", "resp", "aredis", "jobs", "lifecycle", "parking", "server", "store")
#: Set (to anything) to run without compiled code: every module of COMPILED from its ``.py``.
PURE_ENV = "FAKTORY_FAST_PURE"
#: Written by setup.py's build_ext beside the compiled modules: for each one it built, the
#: ``source_digest`` of what it compiled.
BUILD_RECORD = "_compiled.json"


def source_digest(package_dir: str, name: str) -> str:
    """The digest of a compiled module's sources: its ``.py``, ``.pyx`` and ``.pxd``.

    setup.py records it for each module it compiles.
    """
    digest = hashlib.sha256()
    for suffix in (".py", ".pyx", ".pxd"):
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
    """Imports the ``.py`` of a module of COMPILED under PURE_ENV, or when the build was not
    made from the sources beside it (an edit since the last ``make build`` must not run stale
    code); otherwise the usual import, which prefers the built module to the ``.py``.

    The build's record of its sources decides, not file times: pip writes an installed
    package's ``.py`` files after its compiled ones, and a copy may change every time.
    """

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
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
    """"cython" when every module of COMPILED is imported compiled here, else "python"."""
    for name in COMPILED:
        spec = importlib.util.find_spec(f"{__name__}.{name}")
        if spec is None or not spec.origin or spec.origin.endswith(".py"):
            return "python"
    return "cython"
