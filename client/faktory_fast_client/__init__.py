"""A Faktory client and worker for Python: sync and asyncio, pools, batches and tracking.

Producer::

    from faktory_fast_client import Client, Job
    with Client("tcp://localhost:7419") as client:
        client.push(Job("SendEmail", ["ann@example.com"]))

Worker: see :class:`Worker`.
"""
from .aio import AsyncClient
from .batch import AsyncBatch, Batch, BatchStatus
from .client import Client
from .errors import (
    AuthenticationError,
    BatchError,
    FaktoryConnectionError,
    FaktoryError,
    NotUniqueError,
    ServerError,
    UnansweredError,
)
from .job import Job, random_jid
from .pool import AsyncPool, Pool
from .tracking import JobTrack
from .url import ServerAddress, parse_url
from .worker import NoHandlerError, Worker, current_job

__version__ = "0.1.0"

__all__ = [
    "AsyncBatch", "AsyncClient", "AsyncPool", "AuthenticationError", "Batch", "BatchError",
    "BatchStatus", "Client", "FaktoryConnectionError", "FaktoryError", "Job", "JobTrack",
    "NoHandlerError", "NotUniqueError", "Pool", "ServerAddress", "ServerError", "UnansweredError", "Worker",
    "current_job", "parse_url", "random_jid",
]
