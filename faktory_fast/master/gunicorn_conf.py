"""gunicorn's configuration for the web UI (``-c python:faktory_fast.master.gunicorn_conf``).

The supervisor passes the write end of a pipe in READY_FD_ENV; a worker that has loaded the
app writes to it, so the supervisor knows the UI serves (and that one which exits before
this could not start). gunicorn reads this module's names as settings: only hooks here.
"""
from __future__ import annotations

import os
from typing import Any

READY_FD_ENV = "FAKTORY_FAST_WEB_READY_FD"


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: the app is loaded and the worker is about to accept requests."""
    fd = os.environ.get(READY_FD_ENV)
    if fd:
        try:
            os.write(int(fd), b".")
        except (OSError, ValueError):
            pass  # the supervisor is gone or did not ask
