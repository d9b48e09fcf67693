"""The client package (client/) as users install it: ``pip install ./client`` into a fresh
virtualenv brings nothing but itself (none of the server's dependencies), and the installed
package pushes and fetches against a running server."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.slow.test_install import pip
from tests.support import ROOT, FaktoryServer

SCRIPT = """
import json, sys
import faktory_fast_client as f
with f.Client(sys.argv[1]) as c:
    job = f.Job("Installed", [1], queue="installedq")
    c.push(job)
    got = c.fetch("installedq")
    c.ack(got.jid)
print(json.dumps({"file": f.__file__, "jid": got.jid == job.jid}))
"""


def test_pip_install_client_alone(tmp_path: Path, server: FaktoryServer) -> None:
    src = tmp_path / "client"
    shutil.copytree(Path(ROOT) / "client", src,
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = str(venv / "bin" / "python")
    pip("--python", python, "install", "-q", str(src))
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", python, "list",
                             "--format", "json"], capture_output=True, text=True, check=True,
                            timeout=60)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert names == {"faktory-fast-client"}, names  # no uvloop, redis, falcon, orjson...
    done = subprocess.run([python, "-c", SCRIPT, server.url], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["jid"] is True and out["file"].startswith(str(venv))
    typed = list((venv / "lib").glob("python*/site-packages/faktory_fast_client/py.typed"))
    assert typed, "py.typed is installed"
