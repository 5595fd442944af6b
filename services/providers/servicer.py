"""The gRPC edges: `Providers` (execution) and `Keys` (the vault). Each method
checks its input, calls one domain function, and renders the answer.

Keys.Put and Keys.Delete publish `keys.v1.changed` on JetStream so that caches of
connected providers (the gateway's) drop the account. A publish that fails is
logged and does not fail the call: the key is stored, and caches expire anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping

import grpc
import orjson
from nats.js import JetStreamContext

from services.common import events, mux_server, telemetry
from services.providers.credentials import KeyFieldError, KeyFields
from services.providers.executor import Executor
from services.providers.outcomes import error
from services.providers.timeouts import Timeouts
from services.providers.vault import KeyVault
from stepblend.v1 import mux_pb2, providers_pb2, providers_pb2_grpc

log = logging.getLogger(__name__)

_MAX_KEY_CHARS = 4096
_PUBLISH_TIMEOUT = 2.0
# Time left to send a readable 504 back before the caller's own deadline fires.
_CALLER_MARGIN_S = 0.5
#: The unary method whose calls CompleteStream carries (its spans' name).
COMPLETE = "/stepblend.v1.Providers/Complete"


class ProvidersServicer(providers_pb2_grpc.ProvidersServicer):
    """Each call runs within one deadline: `deadline_s` (what all its attempts may
    take) from when it arrived, or half a second before the caller's gRPC deadline
    when that is sooner. When it passes, the upstream is closed and the call ends
    with a 504 `timeout` Error event after whatever was already sent, so a caller
    gets a readable error rather than a bare DEADLINE_EXCEEDED, and a caller that set
    no deadline cannot hold a call (and its upstream connection) open for ever."""

    def __init__(
        self, executor: Executor, deadline_s: float = Timeouts.total, draining: asyncio.Event | None = None
    ) -> None:
        self._executor = executor
        self._deadline_s = deadline_s
        #: Set when the server stops: its call streams drain (mux_server.stop_server).
        self._draining = draining

    async def Execute(self, request: providers_pb2.ExecuteRequest, context: grpc.aio.ServicerContext) -> None:
        # Writing from here (rather than yielding) means a cancelled call raises
        # inside this coroutine, and `aclosing` closes the upstream response at once.
        # One message per batch: a write costs far more than the events in it.
        budget = self._budget(context.time_remaining())
        try:
            async with asyncio.timeout(budget), contextlib.aclosing(self._executor.execute(request)) as batches:
                async for batch in batches:
                    await context.write(providers_pb2.ExecuteEvents(events=batch))
        except TimeoutError:
            log.warning("Execute ran out of its %gs deadline", budget, extra={"request_id": request.request_id})
            with contextlib.suppress(Exception):
                await context.write(_deadline_passed(budget))
        except Exception:
            log.exception("Execute failed", extra={"request_id": request.request_id})
            with contextlib.suppress(Exception):
                await context.write(_INTERNAL_ERROR)

    async def Complete(
        self, request: providers_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> providers_pb2.ExecuteEvents:
        return await self._complete(request, self._budget(context.time_remaining()))

    async def CompleteStream(
        self, request_iterator: AsyncIterator[mux_pb2.MuxRequest], context: grpc.aio.ServicerContext
    ) -> None:
        """Complete calls as messages on one long-lived stream (services/common/mux.py)."""
        await mux_server.serve(request_iterator, context, COMPLETE, self._complete_message, draining=self._draining)

    async def _complete_message(self, payload: bytes, timeout_s: float) -> bytes:
        request = providers_pb2.ExecuteRequest.FromString(payload)
        answer = await self._complete(request, self._budget(timeout_s or None))
        return answer.SerializeToString()

    async def _complete(self, request: providers_pb2.ExecuteRequest, budget: float) -> providers_pb2.ExecuteEvents:
        # A cancelled call cancels this coroutine, and `aclosing` closes the upstream too.
        answer = providers_pb2.ExecuteEvents()
        try:
            async with asyncio.timeout(budget), contextlib.aclosing(self._executor.execute(request)) as batches:
                async for batch in batches:
                    answer.events.extend(batch)
        except TimeoutError:
            log.warning("Complete ran out of its %gs deadline", budget, extra={"request_id": request.request_id})
            answer.events.extend(_deadline_passed(budget).events)
        except Exception:
            log.exception("Complete failed", extra={"request_id": request.request_id})
            return _INTERNAL_ERROR
        return answer

    def _budget(self, remaining: float | None) -> float:
        """Seconds a call may take: the service's bound, or the caller's deadline (`remaining`) if sooner."""
        if remaining is None:
            return self._deadline_s
        return max(0.0, min(self._deadline_s, remaining - _CALLER_MARGIN_S))


def _plain_key(provider: str, text: str) -> str:
    """The key of a one-field provider, sent bare or as `{"api_key": ...}`; `KeyFieldError`."""
    if text.startswith("{"):
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            for name in obj:
                if name != "api_key":
                    raise KeyFieldError(str(name)[:64], f"unknown field ({provider} takes only api_key)")
            value = obj.get("api_key")
            text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise KeyFieldError("api_key", "is empty")
    if len(text) > _MAX_KEY_CHARS or any(c.isspace() for c in text):
        raise KeyFieldError("api_key", "is not a valid API key")
    return text


def _json(obj: object) -> str:
    return orjson.dumps(obj).decode()


def _deadline_passed(budget: float) -> providers_pb2.ExecuteEvents:
    message = f"The request did not finish within its {budget:.3g}s deadline."
    return providers_pb2.ExecuteEvents(events=[error(providers_pb2.ERROR_KIND_TIMEOUT, "timeout", message)])


# A bug of ours still ends the request the way the gateway expects.
_INTERNAL_ERROR = providers_pb2.ExecuteEvents(
    events=[error(providers_pb2.ERROR_KIND_INTERNAL, "internal_error", "The providers service failed.")]
)


class KeysServicer(providers_pb2_grpc.KeysServicer):
    """`providers` are the names a key may be stored for; `usable` (default: all)
    those with an endpoint, the only ones `Connected` reports — a key for `local`
    can be stored before STEPBLEND_LOCAL_BASE_URL is set, but is not routed to.
    `operator_only` vendors take a key only through `PutOperatorKey`, which only the
    operator's token may call (grpcio.OPERATOR_METHODS), so no account connects itself
    to an endpoint the operator runs. A vendor in `fields` takes a key of several
    fields (`credentials`): `api_key` carries their JSON object, validated here, and
    the answer shows it masked."""

    def __init__(
        self,
        vault: KeyVault,
        providers: Collection[str],
        js: JetStreamContext,
        usable: Collection[str] | None = None,
        on_change: Callable[[str, str], None] | None = None,
        operator_only: Collection[str] = (),
        fields: Mapping[str, KeyFields] | None = None,
    ) -> None:
        self._vault = vault
        self._fields = fields or {}
        self._operator_only = frozenset(operator_only)
        self._on_change = on_change
        self._providers = providers
        self._usable = providers if usable is None else usable
        self._js = js

    async def Put(
        self, request: providers_pb2.PutKeyRequest, context: grpc.aio.ServicerContext
    ) -> providers_pb2.PutKeyResponse:
        return await self._put(request, context, operator=False)

    async def PutOperatorKey(
        self, request: providers_pb2.PutKeyRequest, context: grpc.aio.ServicerContext
    ) -> providers_pb2.PutKeyResponse:
        return await self._put(request, context, operator=True)

    async def _put(
        self, request: providers_pb2.PutKeyRequest, context: grpc.aio.ServicerContext, *, operator: bool
    ) -> providers_pb2.PutKeyResponse:
        account_id, provider = await self._check(request.account_id, request.provider, context)
        if provider in self._operator_only and not operator:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Provider '{provider}' is connected by the operator only (stepblend keys set EMAIL {provider} -).",
            )
        text = request.api_key.strip()
        fields = self._fields.get(provider)
        try:
            if fields is not None:
                secret = fields.check(text)
                shown = fields.shown(secret)
                stored = await asyncio.to_thread(
                    self._vault.put, account_id, provider, secret, masked=fields.masked(shown), shown=_json(shown)
                )
            else:
                stored = await asyncio.to_thread(self._vault.put, account_id, provider, _plain_key(provider, text))
        except KeyFieldError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self._changed(account_id, provider)
        await self._publish(account_id, provider)
        return providers_pb2.PutKeyResponse(masked_key=stored.masked, fields_json=stored.shown)

    async def Delete(
        self, request: providers_pb2.DeleteKeyRequest, context: grpc.aio.ServicerContext
    ) -> providers_pb2.DeleteKeyResponse:
        account_id, provider = await self._check(request.account_id, request.provider, context)
        deleted = await asyncio.to_thread(self._vault.delete, account_id, provider)
        if deleted:
            self._changed(account_id, provider)
            await self._publish(account_id, provider)
        return providers_pb2.DeleteKeyResponse(deleted=deleted)

    async def List(
        self, request: providers_pb2.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> providers_pb2.ListKeysResponse:
        account_id = await self._account(request.account_id, context)
        keys = await asyncio.to_thread(self._vault.list_keys, account_id)
        return providers_pb2.ListKeysResponse(
            keys=[
                providers_pb2.ProviderKey(
                    provider=k.provider, masked_key=k.masked, updated_at=k.updated_at, fields_json=k.shown
                )
                for k in keys
            ]
        )

    async def Connected(
        self, request: providers_pb2.ConnectedRequest, context: grpc.aio.ServicerContext
    ) -> providers_pb2.ConnectedResponse:
        account_id = await self._account(request.account_id, context)
        providers = await asyncio.to_thread(self._vault.connected, account_id)
        return providers_pb2.ConnectedResponse(providers=[p for p in providers if p in self._usable])

    def _changed(self, account_id: str, provider: str) -> None:
        if self._on_change is not None:
            self._on_change(account_id, provider)

    async def _account(self, account_id: str, context: grpc.aio.ServicerContext) -> str:
        if not account_id.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "account_id is empty")
        return account_id.strip()

    async def _check(self, account_id: str, provider: str, context: grpc.aio.ServicerContext) -> tuple[str, str]:
        account = await self._account(account_id, context)
        name = provider.strip().lower()
        if name not in self._providers:
            known = ", ".join(sorted(self._providers))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown provider {provider!r} (known: {known})")
        return account, name

    async def _publish(self, account_id: str, provider: str) -> None:
        payload = events.KeysChanged(account_id=account_id, provider=provider).model_dump_json().encode()
        try:
            headers = telemetry.message_headers(uuid.uuid4().hex, events.KEYS_CHANGED)
            await self._js.publish(events.KEYS_CHANGED, payload, timeout=_PUBLISH_TIMEOUT, headers=headers)
        except Exception:  # any bus failure is logged, never the caller's
            log.warning("could not publish %s", events.KEYS_CHANGED, exc_info=True, extra={"account_id": account_id})
