"""Unary calls carried as messages on one long-lived gRPC stream (mux.proto).

A grpc.aio unary call costs about 430 µs of CPU between client and server on
this design's machines, a message each way on an open bidirectional stream
about 215 µs (bench/floor.py). A gateway makes a Route and a Complete call per
request, so it keeps one stream open to each of those services and sends the
calls on it as `MuxRequest`s, matched to their `MuxResponse` by id.

What a unary call gave is kept:
- a deadline per call (`timeout_s`, enforced on both sides), and cancellation:
  a caller that gives up sends `cancel`, and the server cancels that call's task;
- errors as gRPC status codes: a failed call raises `grpc.aio.AioRpcError`, as a
  unary call would, so callers map errors exactly as before; a broken stream
  fails the calls in flight on it with UNAVAILABLE, and the next call opens a
  new one;
- one trace: with tracing on, each call is a CLIENT span named as the unary
  method, its context in `trace`, and the server's SERVER span is its child.
  The long-lived streams themselves are not traced (telemetry's filter).

Authentication is the stream's: its metadata carries the internal token, which
the server's interceptor checks when the stream opens.

Under load, messages queue while a write is in flight; the next write then carries
all of them, the first message holding the rest in `more`. A write costs far more
CPU than the bytes in it, so at 64 requests in flight this halves what the streams
cost. Each side sends `stepblend-mux: batch` (the caller in its metadata, the
server in its initial metadata) and batches only to a peer that sent it, so a
gateway and a router or providers process of different releases still talk.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from stepblend.v1 import mux_pb2

__all__ = ["MuxClient", "serve"]

log = logging.getLogger(__name__)

#: Metadata by which each side says it reads batched messages (`more`).
BATCH = ("stepblend-mux", "batch")

R = TypeVar("R")


class _Message(Protocol):
    def SerializeToString(self) -> bytes: ...


def _failed(code: grpc.StatusCode, detail: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), detail)


class _Writer:
    """Writes a call's messages one at a time, from a task of its own: grpc.aio allows
    one write at a time, and a write cut in half by a caller's cancellation leaves the
    call unusable (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS)."""

    def __init__(self, write: Callable[[Any], Awaitable[None]], on_failure: Callable[[BaseException], None]) -> None:
        self._write = write
        self._on_failure = on_failure
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())
        #: Whether the peer reads `more`: then what queued meanwhile goes in one write.
        self.batch = False

    def put(self, message: Any) -> None:
        self._queue.put_nowait(message)

    async def _run(self) -> None:
        try:
            while True:
                message = await self._queue.get()
                taken = 1
                if self.batch and not self._queue.empty():
                    queued = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
                    message.more.extend(queued)
                    taken += len(queued)
                await self._write(message)
                for _ in range(taken):
                    self._queue.task_done()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_failure(exc)

    async def flush(self) -> None:
        """Return once every message put so far is written (or writing failed)."""
        waiting = asyncio.ensure_future(self._queue.join())
        await asyncio.wait({waiting, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()

    def close(self) -> None:
        self._task.cancel()


class _Stream:
    """One open stream, the calls waiting on it, and the tasks writing and reading it."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.pending: dict[int, asyncio.Future[mux_pb2.MuxResponse]] = {}
        self.broken: grpc.aio.AioRpcError | None = None
        self.writer = _Writer(call.write, self._write_failed)
        self.reader = asyncio.ensure_future(self._read())

    def _write_failed(self, exc: BaseException) -> None:
        self._fail(_failed(grpc.StatusCode.UNAVAILABLE, f"the call stream broke ({type(exc).__name__})"))
        self.call.cancel()

    def _fail(self, error: grpc.aio.AioRpcError) -> None:
        if self.broken is None:
            self.broken = error
        for future in self.pending.values():
            if not future.done():
                future.set_exception(self.broken)

    async def _read(self) -> None:
        error = _failed(grpc.StatusCode.UNAVAILABLE, "the call stream ended")
        try:
            self.writer.batch = BATCH in tuple(await self.call.initial_metadata() or ())
            async for message in self.call:
                for response in (message, *message.more):
                    future = self.pending.get(response.id)
                    if future is not None and not future.done():
                        future.set_result(response)
        except grpc.aio.AioRpcError as exc:
            error = _failed(exc.code(), exc.details() or "the call stream failed")
        except asyncio.CancelledError:
            error = _failed(grpc.StatusCode.CANCELLED, "the call stream was closed")
        finally:
            self.writer.close()
            self._fail(error)


class MuxClient(Generic[R]):
    """Calls of one unary `method` ("/stepblend.v1.Router/Route") on a stream that
    `open_stream(metadata=…)` opens (the stub's stream method), with `metadata`."""

    def __init__(
        self,
        open_stream: Callable[..., Any],
        method: str,
        parse: Callable[[bytes], R],
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._open_stream = partial(open_stream, metadata=(*metadata, BATCH))
        self._method = method
        self._parse = parse
        self._ids = itertools.count(1)
        self._stream: _Stream | None = None
        service, _, name = method.lstrip("/").rpartition("/")
        self._attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

    async def call(self, request: _Message, timeout_s: float) -> R:
        """`request` answered within `timeout_s`; raises AioRpcError as a unary call would."""
        message = mux_pb2.MuxRequest(id=next(self._ids), payload=request.SerializeToString(), timeout_s=timeout_s)
        if not trace.get_current_span().get_span_context().is_valid:
            return await self._call(message, timeout_s)
        span = trace.get_tracer(__name__).start_span(self._method, kind=SpanKind.CLIENT, attributes=self._attributes)
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            message.trace.update(carrier)
            try:
                return await self._call(message, timeout_s)
            except grpc.aio.AioRpcError as exc:
                span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.details()))
                raise

    async def _call(self, message: mux_pb2.MuxRequest, timeout_s: float) -> R:
        stream = self._current()
        future: asyncio.Future[mux_pb2.MuxResponse] = asyncio.get_running_loop().create_future()
        stream.pending[message.id] = future
        stream.writer.put(message)
        try:
            async with asyncio.timeout(timeout_s):
                response = await future
        except TimeoutError:
            self._cancel(stream, message.id)
            raise _failed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except asyncio.CancelledError:
            self._cancel(stream, message.id)
            raise
        finally:
            stream.pending.pop(message.id, None)
        if response.code:
            raise _failed(_STATUS.get(response.code, grpc.StatusCode.UNKNOWN), response.detail)
        return self._parse(response.payload)

    def _current(self) -> _Stream:
        stream = self._stream
        if stream is None or stream.broken is not None:
            # Opened outside the caller's trace: the stream outlives every request.
            with trace.use_span(trace.INVALID_SPAN):
                stream = self._stream = _Stream(self._open_stream())
        return stream

    def _cancel(self, stream: _Stream, call_id: int) -> None:
        if stream.broken is None:
            stream.writer.put(mux_pb2.MuxRequest(id=call_id, cancel=True))

    async def close(self) -> None:
        """Close the stream (at shutdown); calls in flight fail with CANCELLED."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.writer.close()
            stream.call.cancel()
            stream.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.reader


# StatusCode by its number, for the codes a MuxResponse carries.
_STATUS = {code.value[0]: code for code in grpc.StatusCode}


async def serve(
    requests: AsyncIterator[mux_pb2.MuxRequest],
    context: grpc.aio.ServicerContext,
    method: str,
    handle: Callable[[bytes, float], Awaitable[bytes]] | None = None,
    *,
    answer_now: Callable[[bytes], bytes] | None = None,
) -> None:
    """Serve one stream of `method`'s calls until the caller closes it: each by
    `handle(payload, timeout_s)` in a task of its own (cancelled by the caller's
    `cancel` or its deadline), or, for work that never waits (Route),
    `answer_now(payload)` at once, in order, with no task."""
    if (handle is None) == (answer_now is None):
        raise TypeError("serve() takes one of handle and answer_now")
    running: dict[int, asyncio.Task[None]] = {}
    tracer = trace.get_tracer(__name__)
    writer = _Writer(context.write, lambda exc: log.warning("answering on %s failed: %r", method, exc))
    if BATCH in tuple(context.invocation_metadata() or ()):
        writer.batch = True
    await context.send_initial_metadata((BATCH,))

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
        for task in list(running.values()):
            task.cancel()
        writer.close()


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
