"""`Providers.Execute`: run one request on its ranked candidates with the account's keys.

This module is the service's only network I/O, through one injected, pooled
`aiohttp.ClientSession` (`upstream.make_client`). Adapters translate (pure); `outcomes` names
how attempts end; `timeouts` says how long each wait may be.

Events, in order, for one request (what the gateway must expect):

    Attempt(failed)*            one per candidate that failed before serving, as it
                                ends, with a key-free `detail`
    then exactly one ending:
      Attempt(ok) chunk+ [Usage] [Error]   stream; the ok Attempt comes right before
                                           the first chunk; Error only if the stream
                                           broke after it started (chunks already
                                           sent stay sent; Usage is then whatever the
                                           provider had reported)
      Attempt(ok) completion [Usage]       non-stream
      Attempt(bad_request) Error(400)      the request is refused: a parameter the
                                           model or provider does not take, or the
                                           provider's 400/404/413/422
      Error                                every candidate failed (or there was none)

`Usage` is the provider's reported usage, when it reported one; a stream asks for it
whether or not the client did, and forwarded chunks never carry it. Completion ids
are `chatcmpl-<request_id>`; `model` is the catalog id; `created` the request's.

The events come in batches, one gRPC message each, because a message costs far more
than the events in it: what is ready at once goes together. A non-stream's ending is
one batch; a stream sends one batch per read of the upstream body (every chunk that
read produced, the first batch starting with the ok Attempt, the last one ending with
the Usage or the Error); a failed Attempt goes alone, unless an Error follows it at
once (a refusal, or the last candidate failing). A batch is never empty.

Walking the candidates: a candidate fails over to the next on any outcome but
`bad_request` (see `outcomes`) — for a stream only until its first chunk has been
received, for a non-stream until the answer is whole.

A cancelled call (the client went away) closes the upstream response at once: the
response is released in `finally` (which closes its connection unless the body was
read to its end), and the servicer closes this generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from services.common.vocab import Outcome
from services.providers.adapters import (
    HoldsBack,
    RequestRefused,
    TokenUsage,
    UpstreamFormatError,
    UpstreamStreamError,
    parse_body,
)
from services.providers.adapters.openai_embeddings import EMBEDDINGS_DIALECT
from services.providers.call import Call, completion_id_for, for_account, native_body, speaker
from services.providers.genai import AttemptTelemetry, GenAiTelemetry
from services.providers.outcomes import (
    Failed,
    attempt,
    broken,
    domain_error,
    error,
    final_error,
    http_failure,
    scrub,
    stream_failure,
    usage_event,
)
from services.providers.timeouts import Timeouts
from services.providers.upstream import AnswerTooLarge, drain, environment_proxy, read_answer, read_some
from services.providers.vault import KeyDecryptionError, KeySource
from services.providers.vendors import Vendor
from stepblend.v1 import providers_pb2, router_pb2

__all__ = ["Executor", "KeySource", "Timeouts", "completion_id_for", "final_error"]

log = logging.getLogger(__name__)


class Executor:
    def __init__(
        self,
        client: aiohttp.ClientSession,
        keys: KeySource,
        vendors: Mapping[str, Vendor],
        timeouts: Timeouts,
        clock: Callable[[], float] = time.time,
        genai: GenAiTelemetry | None = None,
        max_attempts: int = 4,
    ) -> None:
        self._client = client
        self._keys = keys
        self._vendors = vendors
        self._timeouts = timeouts
        self._clock = clock
        self._genai = genai or GenAiTelemetry.off()
        self._max_attempts = max_attempts
        self._proxies = {name: environment_proxy(v.base_url) for name, v in vendors.items() if v.base_url}
        # An account's own endpoint (Azure's) or region (Bedrock's): its proxy looked up once per URL.
        self._endpoint_proxy = functools.lru_cache(maxsize=4096)(environment_proxy)

    async def execute(self, request: providers_pb2.ExecuteRequest) -> AsyncGenerator[list[providers_pb2.ExecuteEvent]]:
        """The events of one request, in the order and the batches the module
        docstring gives."""
        try:
            body = parse_body(request.body)
            native = native_body(request)
        except RequestRefused as exc:
            yield [error(providers_pb2.ERROR_KIND_INVALID_REQUEST, exc.code, exc.message, exc.param)]
            return
        completion_id = completion_id_for(request.request_id)
        created = request.created or int(self._clock())
        operation = "embeddings" if request.native_dialect == EMBEDDINGS_DIALECT else "chat"
        failures: list[providers_pb2.Attempt] = []
        # The last failed attempt: sent when another candidate follows, else with the error.
        failed: list[providers_pb2.ExecuteEvent] = []
        # A provider that refused the account's key or could not be reached is not
        # tried again for its other models: one upstream request per bad key, not one
        # per model. At most `max_attempts` candidates are called per request.
        dead: set[str] = set()
        called = 0
        # The first candidate's translation that refused the request (a parameter
        # that model does not take): the answer if no other candidate takes it.
        refused: providers_pb2.Error | None = None
        for candidate in request.candidates:
            if candidate.provider in dead:
                continue
            if called >= self._max_attempts:
                break
            if failed:
                yield failed
                failed = []
            started = time.monotonic()
            observed = self._genai.attempt(candidate, request.stream, body, operation)
            try:
                call = await self._prepare(request, body, native, candidate, completion_id, created, started, observed)
                run = self._stream(call) if request.stream else self._complete(call)
                async with contextlib.aclosing(run) as batches:
                    async for batch in batches:
                        for event in batch:
                            observed.saw(event)
                        yield batch
                observed.end()
                return
            except RequestRefused as exc:
                # Refused before any upstream call: the next candidate may take it
                # (the catalog lists most refusals, so the router seldom sends these).
                observed.end(Outcome.BAD_REQUEST)
                elapsed = int((time.monotonic() - started) * 1000)
                failed = [attempt(candidate, Outcome.BAD_REQUEST, 0, elapsed, detail=scrub(exc.message, ""))]
                if refused is None:
                    refused = domain_error(providers_pb2.ERROR_KIND_INVALID_REQUEST, exc.code, exc.message, exc.param)
            except Failed as failure:
                observed.end(failure.outcome)
                elapsed = int((time.monotonic() - started) * 1000)
                event = attempt(candidate, failure.outcome, failure.status, elapsed, detail=failure.detail)
                failures.append(event.attempt)
                if failure.outcome != Outcome.PROVIDER_NOT_CONNECTED:
                    called += 1
                if failure.outcome in (Outcome.PROVIDER_KEY_INVALID, Outcome.CONNECT_ERROR):
                    dead.add(candidate.provider)
                failed_at = f"{candidate.provider}/{candidate.model}"
                detail = f"{failure.outcome} (HTTP {failure.status}) {failure.detail}"
                log.info("attempt on %s failed: %s", failed_at, detail, extra={"request_id": request.request_id})
                if failure.refusal is not None:
                    yield [event, providers_pb2.ExecuteEvent(error=failure.refusal)]
                    return
                failed = [event]
            finally:
                # Closed mid-attempt (the client went away): its span still ends.
                observed.end("cancelled")
        last = refused if refused is not None and not failures else final_error(failures)
        yield [*failed, providers_pb2.ExecuteEvent(error=last)]

    async def _prepare(
        self,
        request: providers_pb2.ExecuteRequest,
        body: dict[str, Any],
        native: dict[str, Any] | None,
        candidate: router_pb2.Candidate,
        completion_id: str,
        created: int,
        started: float,
        observed: AttemptTelemetry,
    ) -> Call:
        vendor = self._vendors.get(candidate.provider)
        if vendor is None:
            log.warning("the catalog names provider %r, which vendors.toml lacks", candidate.provider)
            raise Failed(Outcome.PROVIDER_NOT_CONNECTED, detail=f"no provider {candidate.provider!r} in vendors.toml")
        if not vendor.configured:
            variable = f"STEPBLEND_{vendor.name.upper()}_BASE_URL"
            raise Failed(Outcome.PROVIDER_NOT_CONNECTED, detail=f"{variable} is not set")
        try:
            api_key = await self._keys.plaintext(request.account_id, candidate.provider)
        except KeyDecryptionError:
            log.error(
                "a stored %s key does not decrypt: was STEPBLEND_KEY_ENCRYPTION_KEY changed?",
                candidate.provider,
                extra={"request_id": request.request_id, "account_id": request.account_id},
            )
            raise Failed(Outcome.PROVIDER_KEY_INVALID, detail="the stored key does not decrypt") from None
        if api_key is None:
            raise Failed(Outcome.PROVIDER_NOT_CONNECTED, detail=f"no {candidate.provider} key connected")
        vendor, candidate, api_key = for_account(vendor, candidate, api_key)
        adapter, sent = speaker(vendor, request, body, native)
        upstream = adapter.build_request(sent, candidate, request.stream)
        observed.prepared(vendor.base_url)
        return Call(request, candidate, vendor, adapter, api_key, upstream, completion_id, created, started, observed)

    async def _open(self, call: Call, stream: bool, until: float) -> aiohttp.ClientResponse:
        """Send the request and wait for the response to start, until `until` (loop time)."""
        try:
            async with asyncio.timeout_at(until):
                with call.telemetry.sending():
                    return await self._client.request(
                        "POST",
                        call.vendor.url(call.upstream.path),
                        data=call.upstream.content,
                        headers=call.headers(stream),
                        proxy=self._proxy(call.vendor),
                        allow_redirects=False,
                    )
        except aiohttp.ConnectionTimeoutError:
            raise Failed(Outcome.TIMEOUT, detail=f"no connection within {self._timeouts.connect:g}s") from None
        except TimeoutError:
            raise Failed(Outcome.TIMEOUT, detail=self._waited(stream, started=False)) from None
        except aiohttp.ClientConnectorError:
            host = urlsplit(call.vendor.base_url).netloc
            raise Failed(Outcome.CONNECT_ERROR, detail=f"could not connect to {host}") from None
        except aiohttp.ClientError as exc:
            raise Failed(Outcome.PROVIDER_ERROR, detail=f"the request failed ({type(exc).__name__})") from None

    def _proxy(self, vendor: Vendor) -> str | None:
        if vendor.fields is not None and (vendor.fields.has_endpoint or vendor.fields.has_region):
            return self._endpoint_proxy(vendor.base_url)
        return self._proxies.get(vendor.name)

    async def _refusal(self, call: Call, response: aiohttp.ClientResponse, deadline: float) -> Failed:
        said = call.error_details(await read_some(response, deadline), response.headers)
        return http_failure(response.status, said, call.candidate.provider, call.api_key.get_secret_value())

    async def _complete(self, call: Call) -> AsyncGenerator[list[providers_pb2.ExecuteEvent]]:
        deadline = asyncio.get_running_loop().time() + self._timeouts.total
        response = await self._open(call, False, deadline)
        status = response.status
        try:
            if status != 200:
                raise await self._refusal(call, response, deadline)
            try:
                async with asyncio.timeout_at(deadline):
                    data = await read_answer(response)
            except AnswerTooLarge as exc:
                raise Failed(Outcome.PROVIDER_ERROR, status, str(exc)) from None
            except TimeoutError:
                raise Failed(Outcome.TIMEOUT, status, self._waited(False, started=True)) from None
            except aiohttp.ClientError as exc:
                raise Failed(Outcome.PROVIDER_ERROR, status, f"the answer broke off ({type(exc).__name__})") from None
        finally:
            response.release()
        try:
            completion, usage = call.adapter.parse_completion(
                data, call.completion_id, call.candidate.model, created=call.created
            )
        except UpstreamFormatError as exc:
            raise Failed(Outcome.PROVIDER_ERROR, status, f"unreadable answer: {exc}") from None
        answer = [call.ok(status), providers_pb2.ExecuteEvent(completion=completion)]
        yield answer if usage is None else [*answer, usage_event(usage)]

    async def _stream(self, call: Call) -> AsyncGenerator[list[providers_pb2.ExecuteEvent]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeouts.total
        first_deadline = min(deadline, loop.time() + self._timeouts.first_token)
        response = await self._open(call, True, first_deadline)
        status = response.status
        try:
            if status != 200:
                raise await self._refusal(call, response, deadline)
            translator = call.adapter.stream_translator(
                call.completion_id,
                call.candidate.model,
                created=call.created,
                include_usage=call.request.include_usage,
            )
            decoder = call.frame_decoder()
            # Whatever has arrived, per read: one batch of events each.
            body = response.content.iter_any()
            served = False
            while True:
                # Before the first chunk only the first-token deadline applies (a
                # model may think in silence); after it, the idle limit too.
                limit = min(deadline, loop.time() + self._timeouts.read) if served else first_deadline
                try:
                    async with asyncio.timeout_at(limit):
                        data = await anext(body, None)
                except TimeoutError:
                    detail = self._waited(True, started=served, total=limit >= deadline)
                    if not served:
                        raise Failed(Outcome.TIMEOUT, status, detail) from None
                    yield self._break(call, translator.usage, Outcome.TIMEOUT, detail)
                    return
                except aiohttp.ClientError as exc:
                    detail = f"the stream broke ({type(exc).__name__})"
                    if not served:
                        raise Failed(Outcome.PROVIDER_ERROR, status, detail) from None
                    yield self._break(call, translator.usage, Outcome.PROVIDER_ERROR, detail)
                    return
                # The events of this read, sent together.
                batch: list[providers_pb2.ExecuteEvent] = []
                try:
                    events = decoder.feed(data) if data is not None else decoder.finish()
                except UpstreamFormatError as exc:
                    outcome, detail = stream_failure(exc, call.api_key.get_secret_value())
                    if not served:
                        raise Failed(outcome, status, detail) from None
                    yield self._break(call, translator.usage, outcome, detail)
                    return
                for sse in events:
                    try:
                        chunks = translator.feed(sse)
                    except (UpstreamStreamError, UpstreamFormatError) as exc:
                        outcome, detail = stream_failure(exc, call.api_key.get_secret_value())
                        if not served:
                            raise Failed(outcome, status, detail) from None
                        yield [*batch, *self._break(call, translator.usage, Outcome.PROVIDER_ERROR, detail)]
                        return
                    if chunks and not served:
                        served = True
                        batch.append(call.ok(status))
                    batch.extend(providers_pb2.ExecuteEvent(chunk=chunk) for chunk in chunks)
                    if translator.ended:
                        break
                if translator.ended or data is None:
                    break
                if batch:
                    yield batch
            # The end of the stream travels with the last read's chunks, and what the
            # translator held back until it (Gemini's finish chunk).
            held = translator.close() if isinstance(translator, HoldsBack) else []
            if held and not served:
                served = True
                batch.append(call.ok(status))
            batch.extend(providers_pb2.ExecuteEvent(chunk=chunk) for chunk in held)
            if not served:
                raise Failed(Outcome.PROVIDER_ERROR, status, "the stream ended before its first chunk")
            if not translator.complete:
                yield [
                    *batch,
                    *self._break(call, translator.usage, Outcome.PROVIDER_ERROR, "the stream ended unfinished"),
                ]
                return
            if translator.usage is not None:
                batch.append(usage_event(translator.usage))
            if batch:
                yield batch
            if translator.ended:
                await drain(body)
        finally:
            # Back to the pool when the body was read to its end, else closed at once.
            response.release()

    def _break(
        self, call: Call, usage: TokenUsage | None, outcome: Outcome, detail: str
    ) -> list[providers_pb2.ExecuteEvent]:
        """The end of a stream that broke after its first chunk: the usage reported
        so far (the request was served, so it is billed), then the error."""
        log.warning(
            "stream from %s/%s broke after it started: %s",
            call.candidate.provider,
            call.candidate.model,
            detail,
            extra={"request_id": call.request.request_id},
        )
        ending = [broken(call.candidate, outcome)]
        return ending if usage is None else [usage_event(usage), *ending]

    def _waited(self, stream: bool, *, started: bool, total: bool = False) -> str:
        t = self._timeouts
        if not stream or total:
            return f"no {'whole ' if stream else ''}answer within the {t.total:g}s total timeout"
        if started:
            return f"silent for {t.read:g}s mid-stream"
        return f"no first token within {t.first_token:g}s"
