"""Fixtures for billing's tests: a fresh SQLite database and usage events."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext
from sqlalchemy import Engine
from sqlmodel import Session

from services.billing.db import init_db, make_engine
from services.billing.plans import PlanBook, load_plans
from services.common.events import UsageEvent
from tests.support.procs import NatsServer


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'billing.db'}")
    init_db(engine)
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
