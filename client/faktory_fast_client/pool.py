"""Connection pools: :class:`Pool` for threads, :class:`AsyncPool` for asyncio tasks.

Clients are opened on demand up to ``size`` and reused most-recent-first; a borrower waits
when all are out. A client that broke is still returned: it reconnects on its next command.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .aio import AsyncClient
from .client import Client
from .errors import FaktoryError
from .job import Job


class Pool:
    """A thread-safe pool of :class:`Client`; ``client_kwargs`` are Client's arguments.

    ``with pool.connection() as client: client.push(job)``, or ``pool.push(job)``."""

    def __init__(self, url: str | None = None, size: int = 10, timeout: float = 30.0,
                 **client_kwargs: Any) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.size = size
        self.timeout = timeout
        self._make: Callable[[], Client] = lambda: Client(url, **client_kwargs)
        self._idle: list[Client] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[Client]:
        """Borrow a client for the block (waits up to ``timeout`` s when all are out)."""
        if self._closed:
            raise FaktoryError("the pool is closed")
        if not self._slots.acquire(timeout=self.timeout):
            raise FaktoryError(f"no pool connection free within {self.timeout} s")
        try:
            with self._lock:
                client = self._idle.pop() if self._idle else None
            if client is None:
                client = self._make()
            try:
                yield client
            finally:
                with self._lock:
                    if self._closed:
                        client.close()
                    else:
                        self._idle.append(client)
        finally:
            self._slots.release()

    def push(self, job: Job | dict[str, Any]) -> str:
        """Push on a pooled client; the jid."""
        with self.connection() as c:
            return c.push(job)

    def push_bulk(self, jobs: list[Job | dict[str, Any]]) -> dict[str, str]:
        """PUSHB on a pooled client."""
        with self.connection() as c:
            return c.push_bulk(jobs)

    def close(self) -> None:
        """Close the idle clients now and the borrowed ones when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPool:
    """A pool of :class:`AsyncClient` for the tasks of one event loop.

    ``async with pool.connection() as client: await client.push(job)``, or
    ``await pool.push(job)``."""

    def __init__(self, url: str | None = None, size: int = 10, timeout: float = 30.0,
                 **client_kwargs: Any) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.size = size
        self.timeout = timeout
        self._make: Callable[[], AsyncClient] = lambda: AsyncClient(url, **client_kwargs)
        self._idle: list[AsyncClient] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncClient]:
        """Borrow a client for the block."""
        if self._closed:
            raise FaktoryError("the pool is closed")
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise FaktoryError(f"no pool connection free within {self.timeout} s") from None
        try:
            client = self._idle.pop() if self._idle else self._make()
            try:
                yield client
            finally:
                if self._closed:
                    await client.close()
                else:
                    self._idle.append(client)
        finally:
            self._slots.release()

    async def push(self, job: Job | dict[str, Any]) -> str:
        async with self.connection() as c:
            return await c.push(job)

    async def push_bulk(self, jobs: list[Job | dict[str, Any]]) -> dict[str, str]:
        async with self.connection() as c:
            return await c.push_bulk(jobs)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            await client.close()

    async def __aenter__(self) -> AsyncPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
