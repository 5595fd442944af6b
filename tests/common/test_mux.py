"""Unary calls as messages on one long-lived stream (services/common/mux.py), over a
real grpc.aio server and channel: answers reach their own callers however they
interleave; a deadline, a cancelled caller and a failing handler end as a unary
call's would, and the server stops the work; a broken stream fails the calls on it
and the next call opens a new one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from services.common import grpcio, mux_server
from services.common.mux import BATCH, MuxClient
from stepblend.v1 import mux_pb2, router_pb2
from tests.support.waiting import eventually

METHOD = "/test.Echo/Echo"


class Echo:
    """Answers a RouteRequest with a refusal whose message is its model, after
    `max_cost_usd` seconds; `model="boom"` fails; counts what it started and cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.messages_in = 0  # gRPC messages the stream delivered (a batch is one)
        self.handled = 0

    async def handle(self, payload: bytes, timeout_s: float) -> bytes:
        request = router_pb2.RouteRequest.FromString(payload)
        self.handled += 1
        self.started.set()
        if request.model == "boom":
            raise RuntimeError("the handler failed")
        try:
            await asyncio.sleep(float(request.max_cost_usd or 0))
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        refusal = router_pb2.RouteRefusal(message=request.model)
        return router_pb2.RouteResponse(refusal=refusal).SerializeToString()


async def _serve(
    echo: Echo,
    port: int = 0,
    draining: asyncio.Event | None = None,
    max_age_s: float | None = None,
    options: tuple[tuple[str, int], ...] = (),
) -> tuple[grpc.aio.Server, int]:
    """A real gRPC server whose EchoStream is `mux_server.serve` over `echo`, on `port`
    (0: any), its streams aging out after `max_age_s`, with gRPC `options`."""

    async def counted(requests: AsyncIterator[mux_pb2.MuxRequest]) -> AsyncIterator[mux_pb2.MuxRequest]:
        async for message in requests:
            echo.messages_in += 1
            yield message

    async def stream(requests: AsyncIterator[mux_pb2.MuxRequest], context: grpc.aio.ServicerContext) -> None:
        await mux_server.serve(counted(requests), context, METHOD, echo.handle, draining=draining, max_age_s=max_age_s)

    handler = grpc.stream_stream_rpc_method_handler(
        stream, mux_pb2.MuxRequest.FromString, mux_pb2.MuxResponse.SerializeToString
    )
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {"EchoStream": handler}),))
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


@pytest.fixture
async def served() -> AsyncIterator[tuple[Echo, grpc.aio.Server, int]]:
    echo = Echo()
    server, port = await _serve(echo)
    yield echo, server, port
    await server.stop(None)


@pytest.fixture
async def client(served: tuple[Echo, grpc.aio.Server, int]) -> AsyncIterator[MuxClient[router_pb2.RouteResponse]]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{served[2]}")
    open_stream = channel.stream_stream(
        "/test.Echo/EchoStream",
        request_serializer=mux_pb2.MuxRequest.SerializeToString,
        response_deserializer=mux_pb2.MuxResponse.FromString,
    )
    calls = MuxClient(open_stream, METHOD, router_pb2.RouteResponse.FromString)
    yield calls
    await calls.close()
    await channel.close()


def _ask(model: str, delay_s: float = 0.0) -> router_pb2.RouteRequest:
    return router_pb2.RouteRequest(model=model, max_cost_usd=str(delay_s))


async def test_interleaved_answers_reach_their_own_callers(client: MuxClient[router_pb2.RouteResponse]) -> None:
    # Later calls answer first: each caller still gets its own answer.
    names = [f"call-{i}" for i in range(60)]
    answers = await asyncio.gather(*(client.call(_ask(name, (60 - i) / 1000), 5) for i, name in enumerate(names)))
    assert [a.refusal.message for a in answers] == names


async def test_calls_that_queue_behind_a_write_go_in_one_message_and_each_gets_its_own_answer(
    served: tuple[Echo, grpc.aio.Server, int], client: MuxClient[router_pb2.RouteResponse]
) -> None:
    echo = served[0]
    await client.call(_ask("first"), 5)  # the stream open, and both sides know they batch
    names = [f"together-{i}" for i in range(300)]
    answers = await asyncio.gather(*(client.call(_ask(name), 5) for name in names))
    assert [a.refusal.message for a in answers] == names
    # 300 calls put at once: they wait for the writer, then go together.
    assert 1 + 1 <= echo.messages_in <= 1 + 10, echo.messages_in


async def test_a_caller_that_does_not_say_it_reads_batches_gets_one_answer_per_message(
    served: tuple[Echo, grpc.aio.Server, int],
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served[2]}") as channel:
        call = channel.stream_stream(
            "/test.Echo/EchoStream",
            request_serializer=mux_pb2.MuxRequest.SerializeToString,
            response_deserializer=mux_pb2.MuxResponse.FromString,
        )()  # no `stepblend-mux: batch` in its metadata: a caller of an earlier release
        assert BATCH in tuple(await call.initial_metadata())  # the server says it reads them
        for i in range(1, 101):
            await call.write(mux_pb2.MuxRequest(id=i, payload=_ask(f"old-{i}").SerializeToString(), timeout_s=5))
        answers = [await call.read() for _ in range(100)]
        assert all(not answer.more for answer in answers)
        assert sorted(answer.id for answer in answers) == list(range(1, 101))
        await call.done_writing()


async def test_a_deadline_is_deadline_exceeded_and_stops_the_servers_work(
    served: tuple[Echo, grpc.aio.Server, int], client: MuxClient[router_pb2.RouteResponse]
) -> None:
    echo = served[0]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.call(_ask("slow", 30), 0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(echo.cancelled.wait(), 5)
    # The stream is still good for the next call.
    assert (await client.call(_ask("next"), 5)).refusal.message == "next"


async def test_a_cancelled_caller_cancels_the_servers_work(
    served: tuple[Echo, grpc.aio.Server, int], client: MuxClient[router_pb2.RouteResponse]
) -> None:
    echo = served[0]
    waiting = asyncio.ensure_future(client.call(_ask("abandoned", 30), 60))
    await asyncio.wait_for(echo.started.wait(), 5)
    waiting.cancel()
    await asyncio.wait_for(echo.cancelled.wait(), 5)


async def test_a_failing_handler_is_internal_for_that_call_only(client: MuxClient[router_pb2.RouteResponse]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.call(_ask("boom"), 5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert (await client.call(_ask("after"), 5)).refusal.message == "after"


async def test_a_broken_stream_fails_its_calls_and_the_next_call_opens_another(
    served: tuple[Echo, grpc.aio.Server, int], client: MuxClient[router_pb2.RouteResponse]
) -> None:
    echo, server, port = served
    waiting = asyncio.ensure_future(client.call(_ask("in flight", 30), 60))
    await asyncio.wait_for(echo.started.wait(), 5)
    await server.stop(None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await waiting
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)

    # The service comes back on the same port: the next call gets a new stream.
    restarted, _ = await _serve(Echo(), port)
    answer = None
    try:
        for _ in range(50):
            try:
                answer = await client.call(_ask("back"), 2)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        assert answer is not None and answer.refusal.message == "back"
    finally:
        await restarted.stop(None)


async def test_a_call_stream_idle_for_many_keepalive_pings_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The services' own server and channel (services/common/grpcio.py), keepalive
    scaled down to 0.3 s: a dozen pings on a connection sending no data. gRPC's default
    server policy closed such a connection after the third (GOAWAY too_many_pings), and
    the next call on the stream failed with UNAVAILABLE."""
    monkeypatch.setattr(grpcio, "KEEPALIVE_MS", 300)
    echo = Echo()

    async def stream(requests: AsyncIterator[mux_pb2.MuxRequest], context: grpc.aio.ServicerContext) -> None:
        await mux_server.serve(requests, context, METHOD, echo.handle)

    handler = grpc.stream_stream_rpc_method_handler(
        stream, mux_pb2.MuxRequest.FromString, mux_pb2.MuxResponse.SerializeToString
    )
    server = grpcio.make_server("")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {"EchoStream": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpcio.channel(f"127.0.0.1:{port}")
    open_stream = channel.stream_stream(
        "/test.Echo/EchoStream",
        request_serializer=mux_pb2.MuxRequest.SerializeToString,
        response_deserializer=mux_pb2.MuxResponse.FromString,
    )
    calls = MuxClient(open_stream, METHOD, router_pb2.RouteResponse.FromString)
    try:
        assert (await calls.call(_ask("before"), 5)).refusal.message == "before"
        await asyncio.sleep(4.0)
        assert (await calls.call(_ask("after"), 5)).refusal.message == "after"
    finally:
        await calls.close()
        await channel.close()
        await server.stop(None)


def _channel_client(
    port: int, idempotent: bool = False
) -> tuple[grpc.aio.Channel, MuxClient[router_pb2.RouteResponse]]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    open_stream = channel.stream_stream(
        "/test.Echo/EchoStream",
        request_serializer=mux_pb2.MuxRequest.SerializeToString,
        response_deserializer=mux_pb2.MuxResponse.FromString,
    )
    return channel, MuxClient(open_stream, METHOD, router_pb2.RouteResponse.FromString, idempotent=idempotent)


async def test_a_stopping_server_answers_its_calls_and_the_next_ones_reach_its_replacement() -> None:
    """A rolling restart: the replacement listens on the same port (SO_REUSEPORT), the
    old server stops with a grace period. Its stream is drained, not cut at the end of
    the grace: the call in flight is answered, every call sent meanwhile reaches the
    replacement, and the old server is gone long before its grace runs out."""
    old_echo, new_echo, draining = Echo(), Echo(), asyncio.Event()
    old, port = await _serve(old_echo, draining=draining)
    channel, client = _channel_client(port)
    try:
        assert (await client.call(_ask("warm"), 5)).refusal.message == "warm"
        replacement, _ = await _serve(new_echo, port)
        in_flight = asyncio.ensure_future(client.call(_ask("in flight", 0.5), 10))
        await asyncio.wait_for(old_echo.started.wait(), 5)
        started = asyncio.get_running_loop().time()
        stopping = asyncio.ensure_future(mux_server.stop_server(old, 20, draining))
        answers = []
        for i in range(20):
            answers.append(await client.call(_ask(f"after {i}"), 5))
            await asyncio.sleep(0.05)
        assert [a.refusal.message for a in answers] == [f"after {i}" for i in range(20)]
        assert (await in_flight).refusal.message == "in flight"
        await asyncio.wait_for(stopping, 10)
        assert asyncio.get_running_loop().time() - started < 5  # drained, not cut at the 20 s grace
        # The old server answered what reached it before it told the caller to move on;
        # everything after went to the replacement.
        assert old_echo.handled + new_echo.handled == 22
        assert new_echo.handled >= 18
        await replacement.stop(None)
    finally:
        await client.close()
        await channel.close()


async def test_streams_age_out_so_that_calls_reach_a_replica_added_later() -> None:
    """A scale-out: a second replica listens on the same port (SO_REUSEPORT, as a new
    pod behind a Service) once the caller's stream is open on the first. The servers
    end connections at 0.3 s (GOAWAY) and streams at 0.4 s, as the services do at 120
    and 144 s: the caller's next streams open new connections, the new replica gets
    calls, and no call fails on the way."""
    first, second = Echo(), Echo()
    aging = (("grpc.max_connection_age_ms", 300),)
    old, port = await _serve(first, max_age_s=0.4, options=aging)
    channel, client = _channel_client(port)
    added = None
    try:
        assert (await client.call(_ask("warm"), 5)).refusal.message == "warm"
        added, _ = await _serve(second, port, max_age_s=0.4, options=aging)
        sent = 0

        async def reached_the_new_replica() -> bool:
            nonlocal sent
            answer = await client.call(_ask(f"call {sent}"), 5)
            assert answer.refusal.message == f"call {sent}"
            sent += 1
            return second.handled > 0

        await eventually(reached_the_new_replica, timeout=20, what="a call answered by the replica added later")
        assert first.handled + second.handled == sent + 1
    finally:
        await client.close()
        await channel.close()
        await old.stop(None)
        if added is not None:
            await added.stop(None)


def test_the_services_streams_age_out_after_their_connections() -> None:
    # Else a stream told to move on would open its successor on the same connection.
    assert mux_server.STREAM_AGE_S > grpcio.MAX_CONNECTION_AGE_S * 1.1  # gRPC's jitter is 10%


@pytest.mark.parametrize("idempotent", [False, True])
async def test_a_call_cut_by_its_stream_is_sent_again_when_it_never_left_or_the_method_is_idempotent(
    idempotent: bool,
) -> None:
    """The first call is in a write that has not finished when the stream breaks; the
    second waits behind it and never reaches the transport. The second is sent again
    on a new stream (to the replacement on the same port), and so is the first when
    the method is idempotent; otherwise the first fails UNAVAILABLE, as a unary call
    whose request may have reached its server would."""
    old, port = await _serve(Echo())
    channel, client = _channel_client(port, idempotent)
    try:
        await client.call(_ask("warm"), 5)
        stream = client._stream
        assert stream is not None
        release = asyncio.Event()
        write = stream.writer._write

        async def slow_write(message: mux_pb2.MuxRequest) -> None:
            await release.wait()  # a transport slow to take the bytes
            await write(message)

        stream.writer._write = slow_write
        first = asyncio.ensure_future(client.call(_ask("first"), 10))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(client.call(_ask("second"), 10))
        await asyncio.sleep(0.05)
        replacement, _ = await _serve(Echo(), port)
        await old.stop(None)
        release.set()
        assert (await second).refusal.message == "second"
        if idempotent:
            assert (await first).refusal.message == "first"
        else:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await first
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await replacement.stop(None)
    finally:
        await client.close()
        await channel.close()
