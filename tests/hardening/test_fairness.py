"""Fairness (issue 9, item 6): one account cannot take the gateway from the others.

The system runs with STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT=4. An account over its
limit gets retryable 429s (`concurrency_limit_exceeded`) while another account is
served; slots come back when responses end, streams included, and when a client
walks away mid-stream. Slow SSE readers — clients that read one chunk of a large
answer and then stall — hold their slots and nothing else: another account's
latency stays where it was, and the gateway does not buffer what they don't read.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from services.gateway.fairness import DEFAULT_LIMIT, InFlight, limit_from_env
from tests.hardening.stack import Account, Stack, error_of, running
from tests.support.waiting import eventually, wait_until

LIMIT = 4
# How long the mock holds a request: the checks made while slots are held fit well inside it.
HOLD_MS = 5000
SLOW_MODEL = "openai:gpt-4o"  # the mock is told to make this one slow or long
FAST_MODEL = "openai:gpt-4o-mini"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(Path(tmp_path_factory.mktemp("fairness")), STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT=str(LIMIT)) as system:
        yield system


@pytest.fixture(autouse=True)
def reset_mock(stack: Stack) -> Iterator[None]:
    yield
    stack.mock("DELETE", "/_mock/behaviour")


def body(model: str, content: str = "hello", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def at_provider(stack: Stack, account: Account) -> int:
    """How many of the account's requests the (mock) provider has received: each
    holds one of the account's slots until the provider answers."""
    async with httpx.AsyncClient(timeout=10) as client:
        seen = (await client.get(f"{stack.mock_url}/_mock/requests")).json()
    keys = tuple(account.keys.values())
    return sum(
        1
        for request in seen
        if (request["headers"].get("authorization") or request["headers"].get("x-api-key", "")).endswith(keys)
    )


def test_limit_setting() -> None:
    assert limit_from_env({}) == DEFAULT_LIMIT == 64
    assert limit_from_env({"STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT": " 8 "}) == 8
    with pytest.raises(ValueError):
        limit_from_env({"STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT": "-1"})
    unlimited = InFlight(0)
    assert all(unlimited.acquire("a") for _ in range(1000))
    two = InFlight(2)
    assert two.acquire("a") and two.acquire("a") and not two.acquire("a") and two.acquire("b")
    two.release("a")
    assert two.acquire("a") and two.count("a") == 2


def test_an_account_over_its_limit_gets_retryable_429s_while_another_is_served(stack: Stack) -> None:
    busy, other = stack.account(), stack.account()
    stack.mock("POST", "/_mock/behaviour", {"model": "gpt-4o", "delay_ms": HOLD_MS})

    async def run() -> tuple[list[httpx.Response], list[httpx.Response], list[float]]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            busy_calls = [
                asyncio.ensure_future(client.post("/chat/completions", json=body(SLOW_MODEL), headers=busy.headers))
                for _ in range(3 * LIMIT)
            ]

            async def every_busy_request_is_in() -> bool:
                refused = sum(call.done() and call.result().status_code == 429 for call in busy_calls)
                return refused == 2 * LIMIT and await at_provider(stack, busy) == LIMIT

            # The first LIMIT are waiting on the provider, the others were refused.
            await eventually(every_busy_request_is_in, what=f"{LIMIT} busy requests at the provider")
            other_times: list[float] = []
            other_responses = []
            for _ in range(LIMIT):
                started = time.monotonic()
                other_responses.append(
                    await client.post("/chat/completions", json=body(FAST_MODEL), headers=other.headers)
                )
                other_times.append(time.monotonic() - started)
            return list(await asyncio.gather(*busy_calls)), other_responses, other_times

    busy_responses, other_responses, other_times = asyncio.run(run())
    statuses = Counter(r.status_code for r in busy_responses)
    print(
        f"\nbusy account: {dict(statuses)}; other account: {[r.status_code for r in other_responses]}, "
        f"slowest {max(other_times) * 1000:.0f} ms"
    )
    assert statuses == {200: LIMIT, 429: 2 * LIMIT}, statuses
    for response in (r for r in busy_responses if r.status_code == 429):
        error = error_of(response)
        assert error["type"] == "rate_limit_error" and error["code"] == "concurrency_limit_exceeded"
        assert "x-should-retry" not in response.headers  # retrying is the right thing to do
        assert response.headers["retry-after"] == "1" and response.headers["x-request-id"]
    assert all(r.status_code == 200 for r in other_responses)
    assert max(other_times) < 3.0  # held requests wait 5 s: another account never waits on them
    # Slots come back: the busy account is served again, and its refusals were never billed.
    assert (
        httpx.post(f"{stack.base_url}/chat/completions", json=body(FAST_MODEL), headers=busy.headers).status_code == 200
    )
    served = {r.headers["x-request-id"] for r in busy_responses if r.status_code == 200}
    refused = {r.headers["x-request-id"] for r in busy_responses if r.status_code == 429}

    def billed() -> dict[str, bool]:
        rows = stack.ledger(busy.account_id)
        return rows if served <= rows.keys() else {}

    ledger = wait_until(billed, timeout=20, what="the served requests in the ledger")
    assert not refused & set(ledger)


async def _all_held(stack: Stack, account: Account) -> bool:
    return await at_provider(stack, account) == LIMIT


def _stream_request(stack: Stack, account: Account, payload: dict[str, object]) -> bytes:
    host = stack.gateway_url.removeprefix("http://").split(":")[0]
    data = orjson.dumps(payload)
    return (
        f"POST /api/v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {account.token}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
    ).encode() + data


def _open_stream(stack: Stack, account: Account, payload: dict[str, object]) -> tuple[socket.socket, bytes]:
    """A client that sends a streaming request and reads only its first chunk."""
    host, port = stack.gateway_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect((host, int(port)))
    sock.sendall(_stream_request(stack, account, payload))
    first = b""
    while b"data: {" not in first:
        piece = sock.recv(1024)
        assert piece, first
        first += piece
    return sock, first


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_stream_holds_its_slot_until_it_ends_or_its_client_leaves(stack: Stack) -> None:
    account = stack.account()
    stack.mock("POST", "/_mock/behaviour", {"model": "gpt-4o", "chunk_delay_ms": 2000})
    streams = [
        _open_stream(stack, account, body(SLOW_MODEL, "one two three four five six", stream=True))[0]
        for _ in range(LIMIT)
    ]
    over = httpx.post(f"{stack.base_url}/chat/completions", json=body(FAST_MODEL), headers=account.headers)
    assert over.status_code == 429 and error_of(over)["code"] == "concurrency_limit_exceeded"
    for sock in streams:
        sock.close()  # the client walks away mid-stream

    def served() -> bool:
        response = httpx.post(f"{stack.base_url}/chat/completions", json=body(FAST_MODEL), headers=account.headers)
        return response.status_code == 200

    wait_until(served, timeout=15, interval=0.1, what="slots of abandoned streams given back")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _until_quiet(pids: list[int], timeout: float = 20.0) -> float:
    """Wait until the processes use < 5% CPU over half a second; return the wait."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = sum(_cpu_s(pid) for pid in pids)
        time.sleep(0.5)
        if sum(_cpu_s(pid) for pid in pids) - before < 0.025:
            break
    return time.monotonic() - started


def test_slow_sse_readers_do_not_slow_another_account(stack: Stack) -> None:
    """Each stalled answer (~7 MB) is more than the kernel's socket buffers hold, so
    once the buffers are full the gateway really is blocked writing to those clients."""
    slow, fast = stack.account(), stack.account()
    pieces, word = 6_000, "w" * 999 + " "
    stack.mock("POST", "/_mock/behaviour", {"model": "gpt-4o", "content": word * pieces})

    def fast_latencies(client: httpx.Client, n: int) -> list[float]:
        times = []
        for i in range(n):
            payload = body(FAST_MODEL, f"fast {i}", stream=i % 2 == 1)
            started = time.monotonic()
            response = client.post(f"{stack.base_url}/chat/completions", json=payload, headers=fast.headers)
            assert response.status_code == 200, response.text[:300]
            times.append(time.monotonic() - started)
        return times

    pids = [stack.proc(name).pid for name in ("gateway", "providers", "mock")]
    gateway = stack.proc("gateway").pid
    with httpx.Client(timeout=30) as client:
        fast_latencies(client, 10)  # warm
        baseline = fast_latencies(client, 40)
        rss_before = _rss_mb(gateway)
        stalled = [_open_stream(stack, slow, body(SLOW_MODEL, stream=True)) for _ in range(LIMIT)]
        settled = _until_quiet(pids)
        # Still stalled, not finished: the slow account's slots are all held.
        assert (
            client.post(f"{stack.base_url}/chat/completions", json=body(FAST_MODEL), headers=slow.headers).status_code
            == 429
        )
        during = fast_latencies(client, 40)
        rss_during = _rss_mb(gateway)
    print(
        f"\nfast account, {len(baseline)} requests: p50 {statistics.median(baseline) * 1000:.1f} ms, "
        f"max {max(baseline) * 1000:.1f} ms; with {LIMIT} readers stalled on ~7 MB streams (settled in {settled:.1f} s): "
        f"p50 {statistics.median(during) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms; "
        f"gateway RSS {rss_before:.0f} -> {rss_during:.0f} MB"
    )
    assert statistics.median(during) < 3 * statistics.median(baseline) + 0.02  # noise on 2 cores, not a stall
    assert max(during) < 3.0  # a gateway blocked on the stalled writes would hold these for good
    # Back-pressure, not buffering: what the stalled clients don't read is not piled up in the gateway.
    assert rss_during - rss_before < 40
    # The stalled streams were only waiting: read on, and each ends whole.
    for sock, first in stalled:
        rest = bytearray(first)
        while not rest.endswith(b"0\r\n\r\n"):
            piece = sock.recv(1 << 16)
            if not piece:
                break
            rest += piece
        sock.close()
        assert rest.count(b'"content":"' + word.encode() + b'"') == pieces
        assert b"data: [DONE]" in rest


def test_the_grpc_chat_api_shares_the_accounts_slots(stack: Stack) -> None:
    """HTTP streams holding every slot leave the gRPC API none for that account."""
    import grpc

    from stepblend.v1 import chat_pb2, chat_pb2_grpc

    busy = stack.account()
    stack.mock("POST", "/_mock/behaviour", {"model": "gpt-4o", "delay_ms": HOLD_MS})

    async def run() -> grpc.StatusCode:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            held = [
                asyncio.create_task(client.post("/chat/completions", headers=busy.headers, json=body("gpt-4o")))
                for _ in range(LIMIT)
            ]
            await eventually(lambda: _all_held(stack, busy), what=f"{LIMIT} requests at the provider")
            async with grpc.aio.insecure_channel(stack.addresses["chat"]) as channel:
                request = chat_pb2.ChatRequest(
                    model="gpt-4o", messages=[chat_pb2.ChatMessage(role="user", content="hi")]
                )
                try:
                    await chat_pb2_grpc.ChatStub(channel).Complete(
                        request, metadata=(("authorization", f"Bearer {busy.token}"),)
                    )
                    code = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
            await asyncio.gather(*held)
            return code

    assert asyncio.run(run()) == grpc.StatusCode.RESOURCE_EXHAUSTED


# Every other route that parses and counts a body before admission, with a body it serves.
BODY_ROUTES = {
    "/route": body(FAST_MODEL),
    "/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/responses": {"model": FAST_MODEL, "input": "hi"},
    "/messages": {"model": FAST_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    "/messages/count_tokens": {"model": FAST_MODEL, "messages": [{"role": "user", "content": "hi"}]},
}


def test_every_route_that_reads_a_body_shares_the_accounts_slots(stack: Stack) -> None:
    """/route, /embeddings, /responses and Anthropic's routes parse and count a body
    before admission (the Routing API is free of quota, not of work): each takes a
    slot like a completion, so with every slot held each is a retryable 429."""
    busy = stack.account()
    stack.mock("POST", "/_mock/behaviour", {"model": "gpt-4o", "delay_ms": HOLD_MS})

    async def run() -> dict[str, httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            held = [
                asyncio.create_task(client.post("/chat/completions", headers=busy.headers, json=body("gpt-4o")))
                for _ in range(LIMIT)
            ]
            await eventually(lambda: _all_held(stack, busy), what=f"{LIMIT} requests at the provider")
            refused = {
                path: await client.post(path, headers=busy.headers, json=payload)
                for path, payload in BODY_ROUTES.items()
            }
            await asyncio.gather(*held)
            return refused

    for path, refused in asyncio.run(run()).items():
        assert refused.status_code == 429, (path, refused.text)
        error = refused.json()["error"]
        kind = error["type"] if "/messages" in path else error["code"]
        assert kind == ("rate_limit_error" if "/messages" in path else "concurrency_limit_exceeded"), (path, error)
        served = httpx.post(f"{stack.base_url}{path}", headers=busy.headers, json=BODY_ROUTES[path], timeout=30)
        assert served.status_code == 200, (path, served.text[:300])


def test_the_grpc_chat_api_has_the_http_body_limit(stack: Stack) -> None:
    import grpc

    from services.gateway.schemas import MAX_BODY_BYTES
    from stepblend.v1 import chat_pb2, chat_pb2_grpc

    account = stack.account()

    async def call(size: int) -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(
            stack.addresses["chat"], options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        ) as channel:
            request = chat_pb2.ChatRequest(
                model=FAST_MODEL, messages=[chat_pb2.ChatMessage(role="user", content="x" * size)]
            )
            try:
                await chat_pb2_grpc.ChatStub(channel).Complete(
                    request, metadata=(("authorization", f"Bearer {account.token}"),), timeout=30
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    assert asyncio.run(call(MAX_BODY_BYTES + 1024)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert asyncio.run(call(16)) == grpc.StatusCode.OK
