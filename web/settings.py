"""The web UI's settings, passed by the supervisor through the environment."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Settings:
    """What the web app needs to know about the server it belongs to."""

    redis_url: str
    password: str = ""
    environment: str = "development"
    started_at: float = field(default_factory=time.time)
    binding: str = "localhost:7419"
    metrics_job_types: int = 100  # /metrics' job types by name (--metrics-job-types)

    @classmethod
    def from_env(cls) -> Settings:
        """Read ``FAKTORY_FAST_*`` as set by ``master.webui.WebUI.start``."""
        env = os.environ
        return cls(redis_url=env["FAKTORY_FAST_REDIS_URL"],
                   password=env.get("FAKTORY_FAST_WEB_PASSWORD", ""),
                   environment=env.get("FAKTORY_FAST_ENV", "development"),
                   started_at=float(env.get("FAKTORY_FAST_STARTED_AT") or time.time()),
                   binding=env.get("FAKTORY_FAST_BINDING", "localhost:7419"),
                   metrics_job_types=int(env.get("FAKTORY_FAST_METRICS_JOB_TYPES") or 100))
