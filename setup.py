"""Build script: the Cython hot path is optional (each compiled module has its .py).

faktory_fast.COMPILED lists the modules compiled, each from its .pyx in ext/ where there is one
(the codecs), else from its .py as it is, typed by its .pxd in ext/ (which mirrors the package
tree); FAKTORY_FAST_PURE=1 at run time
ignores what was built. Every extension is optional: without a C compiler (or without Cython)
the install succeeds with the pure-Python package, and the server's start-up line says
"hot path: python"."""
import json
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    from Cython.Build import cythonize
except ImportError:  # no Cython: the pure-Python fallbacks are used
    cythonize = None

# The list of compiled modules and the digest of their sources live in the package (it imports
# nothing outside the standard library at the top), so build and run time cannot disagree.
ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
from faktory_fast import BUILD_RECORD, COMPILED, EXT_DIR, source_digest  # noqa: E402


def build_source(name: str) -> str:
    """What the module ``faktory_fast.<name>`` is compiled from: its .pyx, else its .py."""
    path = "faktory_fast/" + name.replace(".", "/")
    pyx = f"{EXT_DIR}/{path}.pyx"
    return pyx if os.path.exists(pyx) else f"{path}.py"


class BuildExt(build_ext):
    """Builds on every core, skips an extension that fails to compile (``optional``), and
    records beside the compiled modules which sources they were built from: faktory_fast
    imports a compiled module only while its sources are still the ones recorded. Only the
    extensions this run built (or found up to date) are recorded: a module whose compile
    failed keeps no record, so an older build of it left in place is not imported."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = True  # os.cpu_count() jobs
        self.built: list[str] = []

    def build_extension(self, ext):
        super().build_extension(ext)  # raises when the compile fails (then filtered: optional)
        self.built.append(ext.name.removeprefix("faktory_fast."))

    def run(self):
        super().run()
        record = {name: SOURCES[name] for name in COMPILED if name in self.built}
        target = os.path.join(os.path.dirname(self.get_ext_fullpath("faktory_fast.jobs")),
                              BUILD_RECORD)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)


# The sources as cythonize (below) reads them: what the extensions are compiled from.
SOURCES = {name: source_digest(ROOT, name) for name in COMPILED}
ext_modules = []
if cythonize is not None and not os.environ.get("FAKTORY_FAST_NO_EXT"):
    ext_modules = cythonize(
        [Extension(f"faktory_fast.{name}", [build_source(name)]) for name in COMPILED],
        # Python's semantics for the compiled .py modules (bounds checks, negative indexing);
        # the .pyx files turn those off in their own header.
        compiler_directives={"language_level": "3"},
        include_path=[EXT_DIR],  # where Cython finds each module's .pxd
    )
    for ext in ext_modules:
        ext.optional = True  # (cythonize drops the attribute from the Extensions it is given)

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
