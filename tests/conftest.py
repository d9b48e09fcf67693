"""Shared fixtures: one real server (2 processes, child Redis) for the session, flushed per test."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.support import Client, FaktoryServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    srv = FaktoryServer(str(tmp_path_factory.mktemp("faktory")), processes=2).start()
    yield srv
    srv.close_clients()
    srv.stop()


@pytest.fixture
def srv(server: FaktoryServer) -> Iterator[FaktoryServer]:
    """The server, flushed; clients opened through it are closed afterwards."""
    c = server.client()
    assert c.call("FLUSH") == "OK"
    yield server
    server.close_clients()


@pytest.fixture
def client(srv: FaktoryServer) -> Client:
    """A connection to the flushed server (a module's own ``server`` fixture takes precedence)."""
    return srv.client()
