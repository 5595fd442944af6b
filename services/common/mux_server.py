"""The server's side of the call streams (services/common/mux.py): `serve` answers
one stream's calls, `stop_server` drains every stream of a stopping server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from stepblend.v1 import mux_pb2

from .mux import BATCH, Writer

__all__ = ["serve", "stop_server"]

log = logging.getLogger(__name__)


async def serve(
    requests: AsyncIterator[mux_pb2.MuxRequest],
    context: grpc.aio.ServicerContext,
    method: str,
    handle: Callable[[bytes, float], Awaitable[bytes]] | None = None,
    *,
    answer_now: Callable[[bytes], bytes] | None = None,
    draining: asyncio.Event | None = None,
) -> None:
    """Serve one stream of `method`'s calls until the caller closes it: each by
    `handle(payload, timeout_s)` in a task of its own (cancelled by the caller's
    `cancel` or its deadline), or, for work that never waits (Route),
    `answer_now(payload)` at once, in order, with no task. Once `draining` is set
    (`stop_server`), the caller is told to send its next calls elsewhere."""
    if (handle is None) == (answer_now is None):
        raise TypeError("serve() takes one of handle and answer_now")
    running: dict[int, asyncio.Task[None]] = {}
    tracer = trace.get_tracer(__name__)
    writer = Writer(context.write, lambda exc: log.warning("answering on %s failed: %r", method, exc))
    if BATCH in tuple(context.invocation_metadata() or ()):
        writer.batch = True
    await context.send_initial_metadata((BATCH,))
    telling = asyncio.ensure_future(_tell_draining(draining, writer)) if draining is not None else None

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
        if telling is not None:
            telling.cancel()
        for task in list(running.values()):
            task.cancel()
        writer.close()


async def _tell_draining(draining: asyncio.Event, writer: Writer) -> None:
    await draining.wait()
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
