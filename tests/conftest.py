from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.billing.pgcluster import PostgresCluster
from tests.support.procs import NatsServer


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server with JetStream for the session's unit tests."""
    server = NatsServer(Path(tmp_path_factory.mktemp("nats"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session, shared by every test that needs
    one (each makes its own database in it); fails (never skips) without the binaries."""
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
