"""HTTP routes: each parses, calls one domain function, renders."""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Query, Request
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import BaseModel
from starlette.responses import Response

from . import accounts, console, pipeline, routing_api
from .auth import Caller, presented
from .codecs.anthropic import AnthropicCodec
from .codecs.embeddings import EmbeddingsCodec, EmbeddingsRequest
from .codecs.openai_chat import OpenAIChatCodec
from .codecs.responses import ResponsesCodec
from .deps import Deps
from .errors import ApiError
from .render import JsonResponse
from .schemas import MAX_BODY_BYTES, AccountChange, ChatRequest, Credentials, NewAccount, NewApiKey, PutKeyBody
from .state import Exchange

OPENAI_CHAT = OpenAIChatCodec()
EMBEDDINGS = EmbeddingsCodec()
ANTHROPIC = AnthropicCodec()
RESPONSES = ResponsesCodec()

router = APIRouter()
health = APIRouter()


def _credential(request: Request) -> str | None:
    return presented(request.headers.get("authorization"), request.headers.get("x-api-key"))


def _deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, f"Request body over the {MAX_BODY_BYTES} byte limit.", code="request_too_large")
    # Read piece by piece: a chunked body (no content-length) is refused as soon as
    # it passes the limit, instead of being buffered whole first.
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"Request body over the {MAX_BODY_BYTES} byte limit.", code="request_too_large")
        parts.append(part)
    return b"".join(parts)


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting a body that the route reads itself (to bound its
    size and parse it once): for the schema only; validation stays in the route."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return inline({**defs[ref.removeprefix("#/$defs/")], **rest})
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


@router.post("/chat/completions", openapi_extra=_json_body(ChatRequest))
async def chat_completions(request: Request) -> Response:
    deps = _deps(request)
    caller = await accounts.authenticate(deps, _credential(request))
    exchange = _exchange(request, caller)
    return await pipeline.run(OPENAI_CHAT, deps, exchange, await _body(request))


def _exchange(request: Request, caller: Caller) -> Exchange:
    return Exchange(
        request_id=request.state.request_id,
        account_id=caller.account_id,
        client_request_id=request.headers.get("x-request-id", "")[:128],
        grant=caller.grant,
    )


@router.post("/embeddings", openapi_extra=_json_body(EmbeddingsRequest))
async def embeddings(request: Request) -> Response:
    """OpenAI's embeddings API (SPEC.md §9): a named embedding model, never a strategy."""
    deps = _deps(request)
    caller = await accounts.authenticate(deps, _credential(request))
    return await pipeline.run(EMBEDDINGS, deps, _exchange(request, caller), await _body(request))


@router.post("/responses")
async def responses(request: Request) -> Response:
    """OpenAI's Responses API (SPEC.md §10), stateless; errors in OpenAI's shape."""
    deps = _deps(request)
    caller = await accounts.authenticate(deps, _credential(request))
    exchange = _exchange(request, caller)
    return await pipeline.run(RESPONSES, deps, exchange, await _body(request))


@router.post("/messages")
async def messages(request: Request) -> Response:
    """Anthropic's Messages API (SPEC.md §8): every error in Anthropic's shape."""
    try:
        deps = _deps(request)
        caller = await accounts.authenticate(deps, _credential(request))
        raw = await _body(request)
    except ApiError as exc:
        return ANTHROPIC.error(exc)
    exchange = _exchange(request, caller)
    beta = request.headers.get("anthropic-beta")
    if beta:
        # Features of the body a natively served request keeps (prompt caching, ...).
        exchange.native_headers["anthropic-beta"] = beta[:1024]
    return await pipeline.run(ANTHROPIC, deps, exchange, raw)


@router.post("/messages/count_tokens")
async def count_message_tokens(request: Request) -> Response:
    """`{"input_tokens": N}` for the body's model, free of charge and of quota."""
    try:
        deps = _deps(request)
        caller = await accounts.authenticate(deps, _credential(request))
        return JsonResponse(await routing_api.count_tokens(deps, caller, ANTHROPIC.parse_count, await _body(request)))
    except ApiError as exc:
        return ANTHROPIC.error(exc)


@router.post("/route", openapi_extra=_json_body(ChatRequest))
async def route_explain(request: Request) -> dict[str, Any]:
    deps = _deps(request)
    caller = await accounts.authenticate(deps, _credential(request))
    return await routing_api.explain(deps, caller, await _body(request))


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    deps = _deps(request)
    await accounts.authenticate(deps, _credential(request))
    return await deps.models.get(deps.router, deps.metadata)


@router.post("/auth/signup", status_code=201)
async def signup(body: NewAccount, request: Request) -> dict[str, Any]:
    return await accounts.signup(_deps(request), body.email, body.password, _client(request))


@router.post("/auth/login")
async def login(body: Credentials, request: Request) -> dict[str, Any]:
    return await accounts.login(_deps(request), body.email, body.password, _client(request))


def _client(request: Request) -> str:
    """The client's address, for the sign-in rate limits (behind a proxy, uvicorn's
    proxy headers make it the real client's)."""
    return request.client.host if request.client else ""


@router.get("/account")
async def get_account(request: Request) -> dict[str, Any]:
    deps = _deps(request)
    caller = await accounts.authenticate(deps, _credential(request))
    return await accounts.account_summary(deps, caller.account_id)


@router.patch("/account")
async def patch_account(body: AccountChange, request: Request) -> dict[str, Any]:
    deps = _deps(request)
    account_id = await accounts.authenticate_session(deps, _credential(request), "change the account's budget")
    return await accounts.set_budget(deps, account_id, body.monthly_budget_usd)


@router.get("/account/usage")
async def get_usage(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    api_key_id: Annotated[str, Query(max_length=64)] = "",
) -> dict[str, Any]:
    deps = _deps(request)
    account_id = await accounts.authenticate_session(deps, _credential(request), "read the account's usage")
    return await accounts.usage(deps, account_id, limit, api_key_id)


@router.get("/account/keys")
async def list_keys(request: Request) -> dict[str, Any]:
    deps = _deps(request)
    account_id = await accounts.authenticate_session(deps, _credential(request), "read provider keys")
    return await accounts.list_keys(deps, account_id)


@router.put("/account/keys/{provider}")
async def put_key(provider: str, body: PutKeyBody, request: Request) -> dict[str, Any]:
    deps = _deps(request)
    account_id = await accounts.authenticate_session(deps, _credential(request), "connect provider keys")
    return await accounts.put_key(deps, account_id, provider, body.secret())


@router.delete("/account/keys/{provider}")
async def delete_key(provider: str, request: Request) -> dict[str, Any]:
    deps = _deps(request)
    account_id = await accounts.authenticate_session(deps, _credential(request), "remove provider keys")
    return await accounts.delete_key(deps, account_id, provider)


@router.post("/account/api-keys", status_code=201)
async def create_api_key(body: NewApiKey, request: Request) -> dict[str, Any]:
    deps = _deps(request)
    account_id = await accounts.authenticate_session(deps, _credential(request), "create API keys")
    return await deps.apikeys.create(account_id, body)


@router.get("/account/api-keys")
async def list_api_keys(request: Request) -> dict[str, Any]:
    deps = _deps(request)
    account_id = await accounts.authenticate_session(deps, _credential(request), "list API keys")
    return await deps.apikeys.list(account_id)


@router.delete("/account/api-keys/{key_id}")
async def revoke_api_key(key_id: str, request: Request) -> dict[str, Any]:
    deps = _deps(request)
    account_id = await accounts.authenticate_session(deps, _credential(request), "revoke API keys")
    return await deps.apikeys.revoke(account_id, key_id[:64])


# The console page and its files. Served at the root, through `health`: the
# router that app.py includes without a prefix.
@health.get("/", include_in_schema=False)
async def console_page() -> Response:
    return console.response(console.INDEX)


@health.get("/console/{name}", include_in_schema=False)
async def console_file(name: str) -> Response:
    return console.response(name)


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(request: Request, verbose: int = 0) -> Response:
    """Ready when started and connected to NATS; a downstream outage is reported
    (verbose) but does not make the gateway unready — its requests get 503s."""
    deps = _deps(request)
    ready = deps.nats.is_connected
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready"}
    if verbose:
        body["dependencies"] = {
            "nats": "connected" if ready else "disconnected",
            "usage_outbox": len(deps.outbox),
            **{name: await _grpc_health(stub) for name, stub in _health_stubs(deps).items()},
        }
    return JsonResponse(body, 200 if ready else 503)


def _health_stubs(deps: Deps) -> dict[str, health_pb2_grpc.HealthStub]:
    return {name: health_pb2_grpc.HealthStub(ch) for name, ch in deps.channels.items()}


async def _grpc_health(stub: health_pb2_grpc.HealthStub) -> str:
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
    except grpc.aio.AioRpcError as exc:
        return f"unavailable ({exc.code().name.lower()})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)).lower()
