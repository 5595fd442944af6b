"""A bare open-model id through routing and the executor (SPEC.md §11): the router's
candidates for gpt-oss-120b, one per connected host, tried in their order against
the mock speaking each host's flavour, so a host that fails is replaced by the next
one and the client is answered as the model it named."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import aiohttp
import orjson
import pytest

from services.providers.executor import Executor
from services.providers.timeouts import Timeouts
from services.providers.upstream import make_client
from services.providers.vendors import load_vendors
from services.router.catalog import Catalog, load_catalog
from services.router.routing import Decision, RouteRequest, route
from services.router.servicer import to_decision_pb
from stepblend.v1 import providers_pb2, router_pb2
from tests.providers.conftest import MemoryKeys, Mock

TIMEOUTS = Timeouts(connect=2.0, read=2.0, total=20.0, first_token=2.0)
HOSTS = ("groq", "together", "fireworks", "cerebras", "openrouter")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client(TIMEOUTS) as shared:
        yield shared


@pytest.fixture
def executor(mock: Mock, client: aiohttp.ClientSession) -> Executor:
    vendors = load_vendors({host: f"{mock.running.url}/{host}/v1" for host in HOSTS})
    keys = MemoryKeys({host: f"sk-{host}-hosts-0123456789abcdef" for host in HOSTS})
    return Executor(client, keys, vendors, TIMEOUTS)


def candidates(
    catalog: Catalog, model: str, connected: Iterable[str], **features: object
) -> list[router_pb2.Candidate]:
    request = RouteRequest(model=model, connected_providers=frozenset(connected), prompt_tokens=50, **features)  # type: ignore[arg-type]
    decision = route(catalog, request)
    assert isinstance(decision, Decision), decision
    return list(to_decision_pb(decision).candidates)


async def run(
    executor: Executor, chosen: list[router_pb2.Candidate], stream: bool = False, **body: object
) -> list[providers_pb2.ExecuteEvent]:
    request = providers_pb2.ExecuteRequest(
        request_id="hosts",
        account_id="acct",
        candidates=chosen,
        body=orjson.dumps({"model": "gpt-oss-120b", "messages": [{"role": "user", "content": "Hi"}], **body}),
        stream=stream,
    )
    return [event async for batch in executor.execute(request) for event in batch]


def attempts(events: list[providers_pb2.ExecuteEvent]) -> list[tuple[str, str]]:
    return [(e.attempt.provider, e.attempt.outcome) for e in events if e.HasField("attempt")]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_a_host_that_fails_is_replaced_by_the_next(
    executor: Executor, mock: Mock, catalog: Catalog, stream: bool
) -> None:
    chosen = candidates(catalog, "gpt-oss-120b", HOSTS, strategy="fastest")
    assert [c.provider for c in chosen][:1] == ["cerebras"]
    await mock.behave(model="gpt-oss-120b", status=503)  # Cerebras' id for it
    events = await run(executor, chosen, stream=stream)
    assert attempts(events) == [("cerebras", "provider_error"), (chosen[1].provider, "ok")]
    answers = (
        [orjson.loads(e.chunk) for e in events if e.HasField("chunk")]
        if stream
        else [orjson.loads(events[-2].completion)]
    )
    assert {a["model"] for a in answers} == {"gpt-oss-120b"}
    seen = await mock.requests()
    assert [(r["path"], r["body"]["model"]) for r in seen] == [
        ("/cerebras/v1/chat/completions", "gpt-oss-120b"),
        (f"/{chosen[1].provider}/v1/chat/completions", chosen[1].upstream_model),
    ]


async def test_every_host_down_but_the_last_still_answers(executor: Executor, mock: Mock, catalog: Catalog) -> None:
    # Three hosts whose ids for the model differ, so that the mock fails each apart.
    chosen = candidates(catalog, "gpt-oss-120b", ["groq", "fireworks", "cerebras"], strategy="lowest_cost")
    assert len({c.upstream_model for c in chosen}) == 3 and chosen[-1].provider == "cerebras"
    for failing in chosen[:-1]:
        await mock.behave(model=failing.upstream_model, status=429)
    events = await run(executor, chosen)
    assert attempts(events) == [
        (chosen[0].provider, "rate_limited"),
        (chosen[1].provider, "rate_limited"),
        ("cerebras", "ok"),
    ]
    assert orjson.loads(events[-2].completion)["model"] == "gpt-oss-120b"


async def test_only_one_host_connected_serves_the_bare_id(executor: Executor, mock: Mock, catalog: Catalog) -> None:
    chosen = candidates(catalog, "gpt-oss-120b", ["fireworks"])
    events = await run(executor, chosen)
    assert attempts(events) == [("fireworks", "ok")]
    [seen] = await mock.requests()
    assert seen["body"]["model"] == "accounts/fireworks/models/gpt-oss-120b"
