"""The codec selector (faktory_fast.codec) as wire and resp use it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("module,name", [("wire", "CommandParser"), ("resp", "RespReader")])
def test_selector_falls_back_to_python(module: str, name: str) -> None:
    code = (f"import sys; sys.modules['faktory_fast._{module}'] = None\n"
            f"from faktory_fast import {module}, {module}_py\n"
            f"assert {module}.cython_impl is None and {module}.{name} is {module}_py.{name}\n"
            f"print({module}.IMPLEMENTATION)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python"
