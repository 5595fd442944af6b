"""Fixtures for billing's tests: databases on SQLite and on PostgreSQL, and usage events.

Every test that takes `engine` (or `session`, `backend`, `new_database`) runs
twice: on a fresh SQLite file, and on PostgreSQL in a throwaway cluster (one
per session). There each test gets the session's migrated database with every
table emptied (TRUNCATE takes milliseconds; CREATE DATABASE waits on two
checkpoints, ~250 ms), or a database of its own when it asks for one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from nats.js import JetStreamContext
from sqlalchemy import Engine, text
from sqlmodel import Session

from services.billing import admission
from services.billing.db import make_engine
from services.billing.keys_servicer import ApiKeysServicer
from services.billing.ledger import entry_from_event
from services.billing.migrate import upgrade
from services.billing.models import TABLES
from services.billing.notify import JetStreamAccountEvents
from services.billing.plans import PlanBook, load_plans
from services.billing.servicer import SERVICE_NAME, BillingServicer
from services.billing.settlement import settle
from services.billing.writer import Writer
from services.common import events
from services.common.events import UsageEvent
from services.common.grpcio import channel, make_server, start_server
from stepblend.v1 import billing_pb2_grpc
from tests.billing.harness import TOKEN
from tests.billing.pgcluster import PostgresCluster
from tests.support.procs import NatsServer

BACKENDS = ["sqlite", "postgresql"]

# Makes the URL of a new, empty billing database; `migrated=True` gives it the schema.
NewDatabase = Callable[..., str]


@pytest.fixture(scope="session")
def pg_shared(pg_cluster: PostgresCluster) -> str:
    """The URL of a database migrated once and emptied before each test that uses it."""
    url = pg_cluster.url(pg_cluster.create_database())
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _empty(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NewDatabase]:
    """Makes fresh billing databases on this test's backend; dropped after the test."""
    made: list[str] = []

    def make(*, migrated: bool = True, own: bool = False) -> str:
        """A migrated (or, `migrated=False`, empty) database's URL; `own`: not the shared one."""
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'db' / f'billing-{uuid.uuid4().hex[:8]}.db'}"
            if migrated:
                engine = make_engine(url)
                upgrade(engine)
                engine.dispose()
            return url
        if migrated and not own:
            return _empty(request.getfixturevalue("pg_shared"))
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        name = cluster.create_database()
        made.append(name)
        url = cluster.url(name)
        if migrated:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
        return url

    yield make
    if made:
        cluster = request.getfixturevalue("pg_cluster")
        for name in made:
            cluster.drop_database(name)


def service_database_url(request: pytest.FixtureRequest, backend: str) -> str:
    """For a running billing (any fixture scope): "" (its data dir's SQLite file) or a new, empty
    PostgreSQL database, which billing's start-up migrates."""
    if backend == "sqlite":
        return ""
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.url(cluster.create_database())


@pytest.fixture
def engine(new_database: NewDatabase) -> Iterator[Engine]:
    engine = make_engine(new_database())
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


@pytest.fixture
def plans() -> PlanBook:
    return load_plans(None)


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


def usage_event(account_id: str, **fields: Any) -> UsageEvent:
    """A completed request a provider answered, admitted now, unless `fields` say otherwise."""
    values: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "account_id": account_id,
        "outcome": "completed",
        "admitted_at": time.time(),
        "strategy_used": "lowest_cost",
        "routed_model": "gpt-4o-mini",
        "provider": "openai",
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "estimated_cost_usd": "0.000042",
        "actual_cost_usd": "0.000039",
        "catalog_version": "2025-01-01",
        "latency_ms": 420,
        "provider_answered": True,
    }
    values.update(fields)
    return UsageEvent(**values)


def settle_event(session: Session, event: UsageEvent) -> bool:
    """Settle `event` in `session`'s transaction and commit, as the usage consumer does."""
    written = settle(session.connection(), entry_from_event(event))
    session.commit()
    return written


def admit_in(session: Session, plans: PlanBook, **request: Any) -> admission.Admission:
    """`admission.admit` in `session`'s transaction, committed, as billing's writer does."""
    answer = admission.admit(session.connection(), plans, **request)
    session.commit()
    return answer


# The plans of the replica tests: a limit to race for, and none.
REPLICA_PLANS = PlanBook.from_limits({"trial": 50, "enterprise": None})


@dataclass
class Replica:
    engine: Engine
    server: grpc.aio.Server
    channel: grpc.aio.Channel
    stub: billing_pb2_grpc.BillingStub
    keys: billing_pb2_grpc.ApiKeysStub


@pytest.fixture
async def replicas(new_database: NewDatabase, js: JetStreamContext) -> AsyncIterator[list[Replica]]:
    """Two billing gRPC servers (Billing and ApiKeys), each with its own engine, on one database."""
    url = new_database()
    await events.ensure_streams(js, 1)  # revoking a key announces it
    running: list[Replica] = []
    try:
        for _ in range(2):
            engine = make_engine(url)
            server = make_server(TOKEN)
            servicer = BillingServicer(
                engine, Writer(engine), REPLICA_PLANS, JetStreamAccountEvents(js), clock=time.time
            )
            billing_pb2_grpc.add_BillingServicer_to_server(servicer, server)
            billing_pb2_grpc.add_ApiKeysServicer_to_server(ApiKeysServicer(servicer), server)
            port, _health = await start_server(server, "127.0.0.1:0", [SERVICE_NAME])
            client = channel(f"127.0.0.1:{port}", TOKEN)
            stubs = billing_pb2_grpc.BillingStub(client), billing_pb2_grpc.ApiKeysStub(client)
            running.append(Replica(engine, server, client, *stubs))
        yield running
    finally:
        for replica in running:
            await replica.channel.close()
            await replica.server.stop(1)
            replica.engine.dispose()
