"""The server's side of the call streams (services/common/mux.py): `serve` answers
one stream's calls, `stop_server` drains every stream of a stopping server.

A stream also ages out: once older than `STREAM_AGE_S` (plus up to 10%), the caller
is told to move on, as at a stop. Its connection had its GOAWAY before that
(grpcio.MAX_CONNECTION_AGE_S), so the caller's next stream opens a new connection,
which the Service may send to another replica: the streams spread over the replicas
again after a scale-out instead of staying where they were first opened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from stepblend.v1 import mux_pb2

from .grpcio import MAX_CONNECTION_AGE_S
from .mux import BATCH, Writer

__all__ = ["STREAM_AGE_S", "serve", "stop_server"]

log = logging.getLogger(__name__)

#: Past its connection's age, so that the caller's next stream goes on a new connection.
STREAM_AGE_S = MAX_CONNECTION_AGE_S * 1.2


async def serve(
    requests: AsyncIterator[mux_pb2.MuxRequest],
    context: grpc.aio.ServicerContext,
    method: str,
    handle: Callable[[bytes, float], Awaitable[bytes]] | None = None,
    *,
    answer_now: Callable[[bytes], bytes] | None = None,
    draining: asyncio.Event | None = None,
    max_age_s: float | None = STREAM_AGE_S,
) -> None:
    """Serve one stream of `method`'s calls until the caller closes it: each by
    `handle(payload, timeout_s)` in a task of its own (cancelled by the caller's
    `cancel` or its deadline), or, for work that never waits (Route),
    `answer_now(payload)` at once, in order, with no task. Once `draining` is set
    (`stop_server`), or the stream is older than `max_age_s`, the caller is told to
    send its next calls elsewhere."""
    if (handle is None) == (answer_now is None):
        raise TypeError("serve() takes one of handle and answer_now")
    running: dict[int, asyncio.Task[None]] = {}
    tracer = trace.get_tracer(__name__)
    writer = Writer(context.write, lambda exc: log.warning("answering on %s failed: %r", method, exc))
    if BATCH in tuple(context.invocation_metadata() or ()):
        writer.batch = True
    await context.send_initial_metadata((BATCH,))
    telling = asyncio.ensure_future(_tell_draining(writer, draining, max_age_s))

    async def answer(message: mux_pb2.MuxRequest, handle: Callable[[bytes, float], Awaitable[bytes]]) -> None:
        try:
            writer.put(await _answer(tracer, method, handle, message))
        except asyncio.CancelledError:
            pass
        finally:
            running.pop(message.id, None)

    try:
        async for batch in requests:
            for message in (batch, *batch.more):
                if message.cancel:
                    task = running.get(message.id)
                    if task is not None:
                        task.cancel()
                elif answer_now is not None:
                    writer.put(_answer_now(tracer, method, answer_now, message))
                else:
                    assert handle is not None
                    running[message.id] = asyncio.ensure_future(answer(message, handle))
        if running:
            await asyncio.gather(*running.values(), return_exceptions=True)
        await writer.flush()
    finally:
        telling.cancel()
        for task in list(running.values()):
            task.cancel()
        writer.close()


async def _tell_draining(writer: Writer, draining: asyncio.Event | None, max_age_s: float | None) -> None:
    """Say `draining` when the server stops or the stream has aged out, whichever is first."""
    age = None if max_age_s is None else max_age_s * random.uniform(1.0, 1.1)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for((draining or asyncio.Event()).wait(), age)
    writer.put(mux_pb2.MuxResponse(draining=True))


async def stop_server(server: grpc.aio.Server, grace_s: float | None, draining: asyncio.Event) -> None:
    """`server.stop(grace_s)`, its call streams drained: the server refuses new streams
    first (so a caller's next stream reaches another replica), then tells each open
    stream's caller to move on, and answers what it has within the grace period."""
    stopping = asyncio.ensure_future(server.stop(grace_s))
    await asyncio.sleep(0)
    draining.set()
    await stopping


def _answer_now(
    tracer: trace.Tracer, method: str, answer_now: Callable[[bytes], bytes], message: mux_pb2.MuxRequest
) -> mux_pb2.MuxResponse:
    span = None
    if message.trace:
        span = tracer.start_span(method, context=propagate.extract(dict(message.trace)), kind=SpanKind.SERVER)
    try:
        with trace.use_span(span) if span is not None else contextlib.nullcontext():
            return mux_pb2.MuxResponse(id=message.id, payload=answer_now(message.payload))
    except Exception as exc:
        log.exception("%s failed", method)
        return mux_pb2.MuxResponse(
            id=message.id, code=grpc.StatusCode.INTERNAL.value[0], detail=f"{method} failed: {type(exc).__name__}"
        )
    finally:
        if span is not None:
            span.end()


async def _answer(
    tracer: trace.Tracer,
    method: str,
    handle: Callable[[bytes, float], Awaitable[bytes]],
    message: mux_pb2.MuxRequest,
) -> mux_pb2.MuxResponse:
    span = None
    if message.trace:
        parent = propagate.extract(dict(message.trace))
        span = tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
    try:
        with trace.use_span(span) if span is not None else contextlib.nullcontext():
            async with asyncio.timeout(message.timeout_s or None):
                payload = await handle(message.payload, message.timeout_s)
        return mux_pb2.MuxResponse(id=message.id, payload=payload)
    except TimeoutError:
        code, detail = grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
    except Exception as exc:
        log.exception("%s failed", method)
        code, detail = grpc.StatusCode.INTERNAL, f"{method} failed: {type(exc).__name__}"
        if span is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, detail))
    finally:
        if span is not None:
            span.end()
    return mux_pb2.MuxResponse(id=message.id, code=code.value[0], detail=detail)
