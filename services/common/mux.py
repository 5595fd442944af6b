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
  new one. A call that failed so is sent once more on a new stream if it never
  reached the transport (as gRPC retries a unary call that never left the
  client), or, for an idempotent method (Route), in any case;
- one trace: with tracing on, each call is a CLIENT span named as the unary
  method, its context in `trace`, and the server's SERVER span is its child.
  The long-lived streams themselves are not traced (telemetry's filter).

The server's side is `mux_server`. A stopping server drains its streams rather
than cutting them (`mux_server.stop_server`):
it refuses new streams, then tells each caller (`draining`), answers the calls it
has, and ends the stream once the caller closes its side. The caller sends its
next calls on a new stream, which reaches another replica. So a rolling restart
of the router or of providers fails no call that a unary call would have served.

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
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from stepblend.v1 import mux_pb2

__all__ = ["BATCH", "MuxClient", "Writer"]

#: Metadata by which each side says it reads batched messages (`more`).
BATCH = ("stepblend-mux", "batch")

R = TypeVar("R")


class _Message(Protocol):
    def SerializeToString(self) -> bytes: ...


def _failed(code: grpc.StatusCode, detail: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), detail)


class _StreamFailed(grpc.aio.AioRpcError):  # type: ignore[misc]  # grpc.aio ships no type for it
    """A call failed because its stream did (not by its server's answer): it may be
    sent again on a new stream."""

    def __init__(self, detail: str) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), detail)


class Writer:
    """Writes a call's messages one at a time, from a task of its own: grpc.aio allows
    one write at a time, and a write cut in half by a caller's cancellation leaves the
    call unusable (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS)."""

    def __init__(
        self,
        write: Callable[[Any], Awaitable[None]],
        on_failure: Callable[[BaseException], None],
        done_writing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._write = write
        self._on_failure = on_failure
        self._done_writing = done_writing
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())
        #: Whether the peer reads `more`: then what queued meanwhile goes in one write.
        self.batch = False
        #: Messages put, and messages handed to a write: the message `put` numbered n
        #: never reached the transport while `handed < n`.
        self.queued = self.handed = 0

    def put(self, message: Any) -> int:
        """Queue `message` for writing; return its number (see `handed`)."""
        self._queue.put_nowait(message)
        self.queued += 1
        return self.queued

    def close_writing(self) -> None:
        """Half-close the call (`done_writing`) once what is queued is written."""
        self._queue.put_nowait(None)

    async def _run(self) -> None:
        try:
            while True:
                taken = [await self._queue.get()]
                if self.batch and not self._queue.empty():
                    taken += [self._queue.get_nowait() for _ in range(self._queue.qsize())]
                messages = [message for message in taken if message is not None]
                if messages:
                    if len(messages) > 1:
                        messages[0].more.extend(messages[1:])
                    self.handed += len(messages)
                    await self._write(messages[0])
                for _ in taken:
                    self._queue.task_done()
                if len(messages) < len(taken):
                    if self._done_writing is not None:
                        await self._done_writing()
                    return
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
        #: The server is stopping (`draining`): no new calls here.
        self.draining = False
        self.closing = False
        self.writer = Writer(call.write, self._write_failed, call.done_writing)
        self.reader = asyncio.ensure_future(self._read())

    @property
    def usable(self) -> bool:
        return self.broken is None and not self.draining

    def close_writing(self) -> None:
        """Close this side once the calls on it are answered (the server is draining)."""
        if not self.closing and not self.pending and self.broken is None:
            self.closing = True
            self.writer.close_writing()

    def _write_failed(self, exc: BaseException) -> None:
        why = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
        self._fail(_StreamFailed(f"the call stream broke ({why})"))
        self.call.cancel()

    def _fail(self, error: grpc.aio.AioRpcError) -> None:
        if self.broken is None:
            self.broken = error
        for future in self.pending.values():
            if not future.done():
                future.set_exception(self.broken)

    async def _read(self) -> None:
        error: grpc.aio.AioRpcError = _StreamFailed("the call stream ended")
        try:
            self.writer.batch = BATCH in tuple(await self.call.initial_metadata() or ())
            async for message in self.call:
                for response in (message, *message.more):
                    future = self.pending.get(response.id)
                    if future is not None and not future.done():
                        future.set_result(response)
                    elif response.draining:
                        self.draining = True
                        self.close_writing()
        except grpc.aio.AioRpcError as exc:
            detail = exc.details() or "the call stream failed"
            error = _StreamFailed(detail) if exc.code() == grpc.StatusCode.UNAVAILABLE else _failed(exc.code(), detail)
        except asyncio.CancelledError:
            error = _failed(grpc.StatusCode.CANCELLED, "the call stream was closed")
        finally:
            self.writer.close()
            self._fail(error)


class MuxClient(Generic[R]):
    """Calls of one unary `method` ("/stepblend.v1.Router/Route") on a stream that
    `open_stream(metadata=…)` opens (the stub's stream method), with `metadata`.
    `idempotent`: a call that may have reached a server whose stream then failed is
    sent once more (a pure decision such as Route); otherwise only a call that never
    reached the transport is."""

    def __init__(
        self,
        open_stream: Callable[..., Any],
        method: str,
        parse: Callable[[bytes], R],
        metadata: tuple[tuple[str, str], ...] = (),
        *,
        idempotent: bool = False,
    ) -> None:
        self._open_stream = partial(open_stream, metadata=(*metadata, BATCH))
        self._method = method
        self._parse = parse
        self._idempotent = idempotent
        self._ids = itertools.count(1)
        self._stream: _Stream | None = None
        #: Streams of stopping servers, until their calls are answered.
        self._draining: set[_Stream] = set()
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        again = True
        while True:
            stream = self._current()
            future: asyncio.Future[mux_pb2.MuxResponse] = loop.create_future()
            stream.pending[message.id] = future
            number = stream.writer.put(message)
            try:
                async with asyncio.timeout_at(deadline):
                    response = await future
                break
            except TimeoutError:
                self._cancel(stream, message.id)
                raise _failed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
            except asyncio.CancelledError:
                self._cancel(stream, message.id)
                raise
            except _StreamFailed:
                if not (again and (self._idempotent or stream.writer.handed < number)):
                    raise
                again = False
                # Sent as it was, less the calls a batched write carried with it.
                message.ClearField("more")
                message.timeout_s = max(0.0, deadline - loop.time())
            finally:
                stream.pending.pop(message.id, None)
                if stream.draining:
                    stream.close_writing()
        if response.code:
            raise _failed(_STATUS.get(response.code, grpc.StatusCode.UNKNOWN), response.detail)
        return self._parse(response.payload)

    def _current(self) -> _Stream:
        stream = self._stream
        if stream is None or not stream.usable:
            if stream is not None and stream.broken is None:
                self._draining.add(stream)
                stream.reader.add_done_callback(partial(_discard, self._draining, stream))
            # Opened outside the caller's trace: the stream outlives every request.
            with trace.use_span(trace.INVALID_SPAN):
                stream = self._stream = _Stream(self._open_stream())
        return stream

    def _cancel(self, stream: _Stream, call_id: int) -> None:
        if stream.broken is None and not stream.closing:
            stream.writer.put(mux_pb2.MuxRequest(id=call_id, cancel=True))

    async def close(self) -> None:
        """Close the streams (at shutdown); calls in flight fail with CANCELLED."""
        streams = [*self._draining, *([self._stream] if self._stream is not None else [])]
        self._stream = None
        for stream in streams:
            stream.writer.close()
            stream.call.cancel()
            stream.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.reader


def _discard(streams: set[_Stream], stream: _Stream, _reader: object) -> None:
    streams.discard(stream)


# StatusCode by its number, for the codes a MuxResponse carries.
_STATUS = {code.value[0]: code for code in grpc.StatusCode}
