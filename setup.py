"""Build script: the Cython hot path in ext/ is optional (pure-Python fallbacks exist)."""
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
        ],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
        include_path=["ext"],
    )

setup(ext_modules=ext_modules)
