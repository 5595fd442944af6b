"""The gRPC Chat API (chat.proto): the request path of pipeline.py behind
typed messages, with the JWT in `authorization` metadata.

Each call gets StepBlend's request id, sent back as `x-request-id` initial
metadata. An ApiError becomes the status code in the table of chat.proto with a
google.rpc.ErrorInfo detail (reason = StepBlend's code, metadata = type, param).
A client that cancels a stream cancels the upstream provider call.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import grpc
import orjson
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from stepblend.v1 import chat_pb2, chat_pb2_grpc, providers_pb2

from . import accounts, chat_wire
from .codecs.base import Parsed
from .codecs.embeddings import EmbeddingsCodec
from .codecs.openai_chat import OpenAIChatCodec, final_chunk, validate
from .deps import Deps
from .errors import ApiError
from .execution import Running, abandon, finish_completion, first_answer, relay
from .fairness import refusal
from .pipeline import start
from .state import Exchange

_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(error: ApiError) -> grpc.Status:
    """An ApiError as a rich gRPC status."""
    code = _STATUS.get(error.status, grpc.StatusCode.UNKNOWN)
    info = error_details_pb2.ErrorInfo(
        reason=error.code or error.type,
        domain="stepblend",
        metadata={"type": error.type, "param": error.param or "", "http_status": str(error.status)},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=error.message, details=[detail]))


class ChatServicer(chat_pb2_grpc.ChatServicer):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def _begin(
        self, context: grpc.aio.ServicerContext, parse: Callable[[], Parsed], dialect: str
    ) -> tuple[Exchange, Running, providers_pb2.ExecuteEvent]:
        """Authenticate, take an account slot, validate, route, admit, execute up to
        the first answer. On success the caller owns the slot (`_release`)."""
        deps = self._deps
        request_id = uuid.uuid4().hex
        await context.send_initial_metadata((("x-request-id", request_id),))
        metadata = dict(context.invocation_metadata() or ())
        caller = await accounts.authenticate(deps, metadata.get("authorization"))
        account_id = caller.account_id
        if not deps.in_flight.acquire(account_id):
            raise refusal(deps.in_flight.limit)
        try:
            exchange = Exchange(
                request_id=request_id,
                account_id=account_id,
                client_request_id=str(metadata.get("x-request-id", ""))[:128],
                grant=caller.grant,
                dialect=dialect,
            )
            running = await start(deps, exchange, parse())
            try:
                return exchange, running, await first_answer(running, exchange)
            except BaseException:
                abandon(deps, exchange, running)
                raise
        except BaseException:
            deps.in_flight.release(account_id)
            raise

    async def Complete(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ChatCompletion:
        exchange, answer = await self._whole(context, partial(_chat, request, False), OPENAI_CHAT)
        return chat_wire.completion(answer, exchange.stepblend(), exchange.request_id)

    async def Embed(self, request: chat_pb2.EmbedRequest, context: grpc.aio.ServicerContext) -> chat_pb2.EmbedResponse:
        body: dict[str, Any] = {"model": request.model, "input": list(request.input)}
        if request.HasField("dimensions"):
            body["dimensions"] = request.dimensions
        parse = partial(EMBEDDINGS.parse, orjson.dumps(body))
        exchange, answer = await self._whole(context, parse, EMBEDDINGS.dialect)
        return chat_wire.embeddings(answer, exchange.stepblend(), exchange.request_id)

    async def _whole(
        self, context: grpc.aio.ServicerContext, parse: Callable[[], Parsed], dialect: str
    ) -> tuple[Exchange, dict[str, Any]]:
        """A non-streamed request from its parse to its whole answer (JSON); an error
        aborts the call with its status."""
        try:
            exchange, running, first = await self._begin(context, parse, dialect)
        except ApiError as exc:
            await context.abort_with_status(status_of(exc))
            raise  # abort_with_status raises; this line is never reached
        try:
            await finish_completion(self._deps, exchange, running)
        except ApiError as exc:
            await context.abort_with_status(status_of(exc))
            raise
        finally:
            self._deps.in_flight.release(exchange.account_id)
        answer: dict[str, Any] = orjson.loads(first.completion)
        return exchange, answer

    async def CompleteStream(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
        try:
            exchange, running, _ = await self._begin(context, partial(_chat, request, True), OPENAI_CHAT)
        except ApiError as exc:
            await context.abort_with_status(status_of(exc))
            return
        try:
            # The wire has a message per chunk: relay's batches are taken apart here.
            broke: ApiError | None = None
            async for piece in relay(self._deps, exchange, running):
                if isinstance(piece, ApiError):
                    broke = piece  # relay's last piece
                else:
                    for chunk in piece:
                        yield chat_wire.chunk(orjson.loads(chunk), exchange.request_id)
            if broke is not None:
                await context.abort_with_status(status_of(broke))
                return
            yield chat_wire.chunk(final_chunk(exchange, exchange.include_usage), exchange.request_id)
        finally:
            self._deps.in_flight.release(exchange.account_id)


OPENAI_CHAT = OpenAIChatCodec.dialect
EMBEDDINGS = EmbeddingsCodec()


def _chat(request: chat_pb2.ChatRequest, stream: bool) -> Parsed:
    return Parsed(*validate(chat_wire.to_openai(request, stream=stream)))
