"""Fixtures of the integration tier beyond tests/conftest.py's."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from faktory_fast_client import Client
from tests.support import FaktoryServer


@pytest.fixture
def fc(srv: FaktoryServer) -> Iterator[Client]:
    """A faktory_fast_client Client (the client package of client/) on the flushed server."""
    c = Client(srv.url)
    yield c
    c.close()


@pytest.fixture
def servers() -> Iterator[list[FaktoryServer]]:
    """Servers the test starts; stopped afterwards."""
    made: list[FaktoryServer] = []
    yield made
    for s in made:
        s.stop()
