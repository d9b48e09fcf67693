"""Build script: the Cython hot path is optional (pure-Python fallbacks exist).

ext/ holds the codecs written for Cython; the hot path's Python modules are compiled as they
are, typed by the .pxd beside them (faktory_fast.COMPILED lists them; FAKTORY_FAST_PURE=1 at run
time ignores what was built)."""
import os

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # no Cython: the pure-Python fallbacks are used
    cythonize = None

ext_modules = []
if cythonize is not None and not os.environ.get("FAKTORY_FAST_NO_EXT"):
    ext_modules = cythonize(
        [
            Extension("faktory_fast._wire", ["ext/_wire.pyx"]),
            Extension("faktory_fast._resp", ["ext/_resp.pyx"]),
            # The hot path's pure-Python modules, compiled as they are (faktory_fast.COMPILED).
            *(Extension(f"faktory_fast.{name}", [f"faktory_fast/{name}.py"])
              for name in ("aredis", "jobs", "lifecycle", "server", "store")),
        ],
        # Python's semantics for the compiled .py modules (bounds checks, negative indexing);
        # the .pyx files turn those off in their own header.
        compiler_directives={"language_level": "3"},
        include_path=["ext"],
    )

setup(ext_modules=ext_modules)
