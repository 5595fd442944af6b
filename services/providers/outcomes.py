"""How attempts end, as events: the outcome vocabulary of `Attempt`, the key-free
`detail` each carries, and the error a request gets when every candidate failed.

Outcomes (the `Attempt.outcome` strings), and whether the walk goes on:

    ok                      served
    provider_not_connected  no key stored, or the vendor has no endpoint    next
    provider_key_invalid    401/403 from the provider, or the stored key
                            does not decrypt                                next
    connect_error           the connection could not be opened              next
    timeout                 connect, first token, or total deadline         next
    rate_limited            429                                             next
    provider_error          5xx (Anthropic's 529 too), another status, an
                            unreadable answer, an error event before the
                            first chunk, a stream that ended before it      next
    bad_request             400/404/413/422: the request itself is wrong    stop, 400

When all fail, the error follows the last candidate actually tried: 429
`rate_limit_error` for `rate_limited`; 504 `timeout`; 502 `provider_key_invalid`;
otherwise 502 `provider_error` (one tried) or 503 `all_providers_failed`
(several); 409 `provider_not_connected` when no candidate was tried.

Messages and details name providers, outcomes, statuses and the provider's own
error type and message — never a key: a provider's 401/403 text is never used
(it quotes the key), and any other text has the key scrubbed out.
"""

from __future__ import annotations

import orjson

from services.common.vocab import Outcome
from services.providers.adapters import ProviderError, TokenUsage, UpstreamFormatError, UpstreamStreamError
from stepblend.v1 import providers_pb2, router_pb2

_MAX_DETAIL = 200
_NOT_SECRET = frozenset({"region", "endpoint"})


class Failed(Exception):
    """An attempt failed before it served anything: the walk may go on, unless
    `refusal` is set (the provider refused the request itself: answer it)."""

    def __init__(
        self, outcome: Outcome, status: int = 0, detail: str = "", refusal: providers_pb2.Error | None = None
    ) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.status = status
        self.detail = detail
        self.refusal = refusal


def secrets_of(api_key: str) -> list[str]:
    """The values to keep out of any text: the key, or each secret string of a key of
    several fields (Bedrock's access key id, secret and session token; not a region
    or an endpoint, which say nothing secret and do appear in messages)."""
    if api_key.startswith("{"):
        try:
            obj = orjson.loads(api_key)
        except orjson.JSONDecodeError:
            return [api_key]
        if isinstance(obj, dict):
            return [v for k, v in obj.items() if isinstance(v, str) and v and k not in _NOT_SECRET]
    return [api_key] if api_key else []


def _without(text: str, api_key: str) -> str:
    for secret in secrets_of(api_key):
        text = text.replace(secret, "[key]")
    return text


def scrub(text: str, api_key: str) -> str:
    """`text` without the key, one line, at most 200 characters."""
    text = _without(text, api_key)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def attempt(
    candidate: router_pb2.Candidate, outcome: Outcome, status: int, latency_ms: int, ttft_ms: int = 0, detail: str = ""
) -> providers_pb2.ExecuteEvent:
    return providers_pb2.ExecuteEvent(
        attempt=providers_pb2.Attempt(
            provider=candidate.provider,
            model=candidate.model,
            outcome=outcome,
            status=status,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            detail=detail,
        )
    )


Kind = providers_pb2.ErrorKind
#: Whether the same request may succeed later, by kind (the key or the request itself
#: must change first for the others).
_RETRYABLE: dict[Kind, bool] = {
    providers_pb2.ERROR_KIND_INVALID_REQUEST: False,
    providers_pb2.ERROR_KIND_NOT_CONNECTED: False,
    providers_pb2.ERROR_KIND_RATE_LIMITED: True,
    providers_pb2.ERROR_KIND_TIMEOUT: True,
    providers_pb2.ERROR_KIND_UPSTREAM_FAILED: True,
    providers_pb2.ERROR_KIND_UNAVAILABLE: True,
    providers_pb2.ERROR_KIND_INTERNAL: True,
}


def domain_error(
    kind: Kind, code: str, message: str, param: str = "", *, retryable: bool | None = None
) -> providers_pb2.Error:
    """An `Error` in the domain's words; `retryable` defaults to the kind's."""
    again = _RETRYABLE[kind] if retryable is None else retryable
    return providers_pb2.Error(kind=kind, code=code, message=message, param=param, retryable=again)


def error(kind: Kind, code: str, message: str, param: str = "") -> providers_pb2.ExecuteEvent:
    return providers_pb2.ExecuteEvent(error=domain_error(kind, code, message, param))


def broken(candidate: router_pb2.Candidate, outcome: Outcome) -> providers_pb2.ExecuteEvent:
    """The error that ends a stream that broke after its first chunk."""
    where = f"{candidate.provider} ({candidate.model})"
    if outcome == Outcome.TIMEOUT:
        return error(
            providers_pb2.ERROR_KIND_TIMEOUT, "timeout", f"The provider {where} timed out in the middle of its answer."
        )
    return error(
        providers_pb2.ERROR_KIND_UPSTREAM_FAILED,
        "stream_interrupted",
        f"The stream from {where} broke in the middle of its answer.",
    )


def final_error(failures: list[providers_pb2.Attempt]) -> providers_pb2.Error:
    """The error for a request whose every candidate failed (see the module docstring)."""
    if not failures:
        return domain_error(
            providers_pb2.ERROR_KIND_UNAVAILABLE, "no_candidates", "No candidate model to run the request on."
        )
    summary = "; ".join(
        f"{a.provider} ({a.model}): {a.outcome}"
        + (f" (HTTP {a.status})" if a.status else "")
        + (f" ({a.detail})" if a.outcome == Outcome.CONNECT_ERROR and a.detail else "")
        for a in failures
    )
    tried = [a for a in failures if a.outcome != Outcome.PROVIDER_NOT_CONNECTED]
    if not tried:
        providers = ", ".join(dict.fromkeys(a.provider for a in failures))
        return domain_error(
            providers_pb2.ERROR_KIND_NOT_CONNECTED,
            "provider_not_connected",
            f"No provider key is connected for {providers}. Connect one with PUT /api/v1/account/keys/{{provider}}.",
        )
    last = tried[-1].outcome
    if last == Outcome.RATE_LIMITED:
        return domain_error(
            providers_pb2.ERROR_KIND_RATE_LIMITED,
            "rate_limit_exceeded",
            f"The providers are rate-limiting these requests; retry later. Tried: {summary}.",
        )
    if last == Outcome.TIMEOUT:
        return domain_error(providers_pb2.ERROR_KIND_TIMEOUT, "timeout", f"The provider timed out. Tried: {summary}.")
    if last == Outcome.PROVIDER_KEY_INVALID:
        # Retrying resends the key the provider just rejected: not until it is replaced.
        return domain_error(
            providers_pb2.ERROR_KIND_UPSTREAM_FAILED,
            "provider_key_invalid",
            f"The provider rejected the stored API key; connect a valid one. Tried: {summary}.",
            retryable=False,
        )
    if len(tried) == 1:
        return domain_error(
            providers_pb2.ERROR_KIND_UPSTREAM_FAILED, "provider_error", f"The provider failed. Tried: {summary}."
        )
    return domain_error(
        providers_pb2.ERROR_KIND_UNAVAILABLE, "all_providers_failed", f"Every provider failed. Tried: {summary}."
    )


def http_failure(status: int, said: ProviderError, provider: str, api_key: str) -> Failed:
    """The failure for a provider's non-200 answer, from its status and error body."""
    # Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
    if status in (401, 403) or said.code == "api_key_invalid":
        # Never the provider's text: a 401 quotes (part of) the key it was sent.
        return Failed(Outcome.PROVIDER_KEY_INVALID, status, f"{provider} rejected the stored key (HTTP {status})")
    said_kind = f" {said.kind}" if said.kind else ""
    said_message = f": {said.message}" if said.message else ""
    detail = scrub(f"HTTP {status}{said_kind}{said_message}", api_key)
    if status == 429:
        return Failed(Outcome.RATE_LIMITED, status, detail)
    if status == 404 and said.code == "DeploymentNotFound":
        # Azure: the account's resource lacks the deployment its key maps the model to.
        # The account's own setup, not the request: the walk goes on, like no deployment.
        return Failed(Outcome.PROVIDER_NOT_CONNECTED, status, detail)
    if status in (400, 404, 413, 422):
        message = _without(said.message, api_key)
        refusal = domain_error(
            providers_pb2.ERROR_KIND_INVALID_REQUEST,
            said.code or "invalid_request",
            message or f"{provider} refused the request (HTTP {status})",
            said.param,
        )
        return Failed(Outcome.BAD_REQUEST, status, detail, refusal)
    return Failed(Outcome.PROVIDER_ERROR, status, detail)


def stream_failure(exc: UpstreamStreamError | UpstreamFormatError, api_key: str) -> tuple[Outcome, str]:
    """The outcome and detail of a stream that reported an error or spoke nonsense."""
    if isinstance(exc, UpstreamFormatError):
        return Outcome.PROVIDER_ERROR, f"unreadable stream: {exc}"
    outcome = Outcome.RATE_LIMITED if exc.kind == "rate_limit_error" else Outcome.PROVIDER_ERROR
    said = f"{exc.kind}: {exc.message}" if exc.kind else exc.message
    return outcome, scrub(f"error event: {said}", api_key)


def usage_event(usage: TokenUsage) -> providers_pb2.ExecuteEvent:
    return providers_pb2.ExecuteEvent(
        usage=providers_pb2.Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cached_prompt_tokens=usage.cached_prompt_tokens,
        )
    )
