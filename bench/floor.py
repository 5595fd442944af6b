"""What the parts of a request cost on their own: the floor under `bench/run.py`.

    python bench/floor.py

Each figure is CPU time per call, measured with nothing of StepBlend around it:
- a grpc.aio unary call and a one-message server stream, client and server both
  pinned to core 0 as in `bench/run.py` (the server's CPU read from /proc);
- the Route call with its real messages (a RouteRequest with features, a ranked
  RouteDecision): as a unary call, and as a message on a long-lived stream
  (services/common/mux.py), the way the gateway sends Route and Complete;
- one aiohttp POST to the microsecond mock (`bench/fastmock.py`, on core 1), the way
  providers calls a provider.
A StepBlend request makes two calls (Route, Complete; admission comes from a
lease) and one provider call, so these set how low its CPU per request can go.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import CLK_TCK, free_port, wait_port  # noqa: E402 - after the path is set
from services.common import mux, mux_server  # noqa: E402
from stepblend.v1 import mux_pb2, providers_pb2, router_pb2  # noqa: E402

CALLS = 3000
WARM_UP = 300
_ANSWER = providers_pb2.ExecuteEvents(events=[providers_pb2.ExecuteEvent(completion=b"x" * 400)])
# The channel method making each kind of call.
_KINDS = {"unary": "unary_unary", "stream": "unary_stream"}
_ROUTE = router_pb2.RouteRequest(
    model="balanced",
    features=router_pb2.RequestFeatures(prompt_tokens=812, max_output_tokens=256, needs_tools=True),
    connected_providers=["openai", "anthropic", "groq", "deepseek", "mistral"],
)
_DECISION = router_pb2.RouteResponse(
    decision=router_pb2.RouteDecision(
        strategy_used="balanced",
        catalog_version="2026-12-01",
        candidates=[
            router_pb2.Candidate(
                provider=p,
                model=m,
                estimated_cost_usd="0.000312",
                worst_cost_usd="0.00098",
                input_price_per_mtok="0.15",
                output_price_per_mtok="0.60",
            )
            for p, m in (("openai", "gpt-4o-mini"), ("groq", "llama-3.3-70b"), ("deepseek", "deepseek-chat"))
        ],
    )
)


def _route_message(payload: bytes) -> bytes:
    router_pb2.RouteRequest.FromString(payload)
    return _DECISION.SerializeToString()


async def _serve(port: int) -> None:
    async def unary(request: providers_pb2.ExecuteRequest, context: grpc.aio.ServicerContext) -> object:
        return _ANSWER

    async def stream(request: providers_pb2.ExecuteRequest, context: grpc.aio.ServicerContext) -> None:
        await context.write(_ANSWER)

    async def route(request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext) -> object:
        return _DECISION

    async def route_stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
        await mux_server.serve(requests, context, "/floor.Floor/route", answer_now=_route_message)

    handlers = {
        "route": grpc.unary_unary_rpc_method_handler(
            route, router_pb2.RouteRequest.FromString, router_pb2.RouteResponse.SerializeToString
        ),
        "route_stream": grpc.stream_stream_rpc_method_handler(
            route_stream, mux_pb2.MuxRequest.FromString, mux_pb2.MuxResponse.SerializeToString
        ),
        "unary": grpc.unary_unary_rpc_method_handler(
            unary, providers_pb2.ExecuteRequest.FromString, providers_pb2.ExecuteEvents.SerializeToString
        ),
        "stream": grpc.unary_stream_rpc_method_handler(
            stream, providers_pb2.ExecuteRequest.FromString, providers_pb2.ExecuteEvents.SerializeToString
        ),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor.Floor", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def _unary(method: Any, request: providers_pb2.ExecuteRequest) -> None:
    await method(request)


async def _streamed(method: Any, request: providers_pb2.ExecuteRequest) -> None:
    async for _ in method(request):
        pass


async def _cost(call: Callable[[], Awaitable[Any]], server_pid: int) -> tuple[float, float]:
    """CPU µs per `call()` in this process and in the server's, after a warm-up."""
    for _ in range(WARM_UP):
        await call()
    server_before, client_before = _cpu_seconds(server_pid), time.process_time()
    for _ in range(CALLS):
        await call()
    return (
        (time.process_time() - client_before) / CALLS * 1e6,
        (_cpu_seconds(server_pid) - server_before) / CALLS * 1e6,
    )


async def _grpc(port: int, server_pid: int) -> dict[str, tuple[float, float]]:
    request = providers_pb2.ExecuteRequest(request_id="r", body=b"{}")
    found = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        for kind, factory in _KINDS.items():
            method = getattr(channel, factory)(
                f"/floor.Floor/{kind}",
                request_serializer=providers_pb2.ExecuteRequest.SerializeToString,
                response_deserializer=providers_pb2.ExecuteEvents.FromString,
            )
            found[kind] = await _cost(partial(_unary if kind == "unary" else _streamed, method, request), server_pid)
        route = channel.unary_unary(
            "/floor.Floor/route",
            request_serializer=router_pb2.RouteRequest.SerializeToString,
            response_deserializer=router_pb2.RouteResponse.FromString,
        )
        open_stream = channel.stream_stream(
            "/floor.Floor/route_stream",
            request_serializer=mux_pb2.MuxRequest.SerializeToString,
            response_deserializer=mux_pb2.MuxResponse.FromString,
        )
        on_stream = mux.MuxClient(open_stream, "/floor.Floor/route", router_pb2.RouteResponse.FromString)
        found["route_unary"] = await _cost(partial(route, _ROUTE, timeout=5), server_pid)
        found["route_mux"] = await _cost(partial(on_stream.call, _ROUTE, 5), server_pid)
        await on_stream.close()
    return found


async def _http(port: int) -> float:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
    headers = {"authorization": "Bearer sk-floor", "content-type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def call() -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()

        for _ in range(WARM_UP):
            await call()
        before = time.process_time()
        for _ in range(CALLS):
            await call()
        return (time.process_time() - before) / CALLS * 1e6


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(_serve(int(sys.argv[2])))
        return
    os.sched_setaffinity(0, {0})
    grpc_port, mock_port = free_port(), free_port()
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--serve", str(grpc_port)])
    mock = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, str(ROOT / "bench" / "fastmock.py"), "--port", str(mock_port)]
    )
    try:
        wait_port(grpc_port)
        wait_port(mock_port)
        calls = asyncio.run(_grpc(grpc_port, server.pid))
        http = asyncio.run(_http(mock_port))
    finally:
        server.kill()
        mock.kill()
    print(f"{'CPU per call (µs)':<36}{'client':>8}{'server':>8}")
    print(f"{'grpc.aio unary call':<36}{calls['unary'][0]:>8.0f}{calls['unary'][1]:>8.0f}")
    print(f"{'grpc.aio server stream, one message':<36}{calls['stream'][0]:>8.0f}{calls['stream'][1]:>8.0f}")
    print(f"{'Route, unary call':<36}{calls['route_unary'][0]:>8.0f}{calls['route_unary'][1]:>8.0f}")
    print(f"{'Route, message on a stream (mux)':<36}{calls['route_mux'][0]:>8.0f}{calls['route_mux'][1]:>8.0f}")
    print(f"{'aiohttp POST to the mock provider':<36}{http:>8.0f}")


if __name__ == "__main__":
    main()
