"""Fairness: a per-account limit on chat completions in flight at one gateway.

One account's burst, or its slow readers holding streams open, must not take every
upstream connection and every task of the gateway from the other accounts. A chat
completion holds one of its account's slots from the moment its token is verified
until its response has been sent in full (a stream: its last byte, or the client
going away). Over `STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT` (default 64; 0 turns the
limit off) a request is refused at once with 429 `rate_limit_error`, code
`concurrency_limit_exceeded`. Unlike a plan limit that refusal is worth retrying, so
it carries `retry-after` and no `x-should-retry: false`; it uses none of the plan's
quota and publishes no usage event, since the request never reached the router.

Every other route that parses and counts a body before admission takes slots like
chat completions: embeddings, the Responses API, Anthropic's Messages API and its
`count_tokens` (their refusal in Anthropic's shape), and the Routing API (`/route`),
which does that work before any quota is involved. The gRPC chat API takes its slots
from the same `InFlight`, and accepts messages no larger than the HTTP body limit.
The limit is per gateway process: N replicas let an account have N × the limit in
flight. Requests without a valid token pass through untouched; the route answers
them 401.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import presented
from .codecs.anthropic import anthropic_error
from .errors import ApiError
from .settings import DEFAULT_MAX_CONCURRENT, GatewaySettings

ENV_NAME = "STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT"
DEFAULT_LIMIT = DEFAULT_MAX_CONCURRENT
# Every route that parses and counts a request body before admission: its work is
# charged to the account's slots (the Routing API is free of quota, not of work).
LIMITED_PATHS = frozenset(
    prefix + path
    for prefix in ("/api/v1", "/v1")
    for path in ("/chat/completions", "/route", "/embeddings", "/responses", "/messages", "/messages/count_tokens")
)
# Routes whose errors are in Anthropic's shape.
ANTHROPIC_PATHS = frozenset(path for path in LIMITED_PATHS if "/messages" in path)
RETRY_AFTER_S = 1


def limit_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The configured limit (GatewaySettings); ValueError (ConfigError: start-up
    fails) when it is not a count."""
    return GatewaySettings.from_env(environ).max_concurrent_per_account


class InFlight:
    """Requests in flight per account, at most `limit` each (0: unlimited)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def acquire(self, account_id: str) -> bool:
        count = self._counts.get(account_id, 0)
        if self.limit and count >= self.limit:
            return False
        self._counts[account_id] = count + 1
        return True

    def release(self, account_id: str) -> None:
        count = self._counts.get(account_id, 0) - 1
        if count > 0:
            self._counts[account_id] = count
        else:
            self._counts.pop(account_id, None)

    def count(self, account_id: str) -> int:
        return self._counts.get(account_id, 0)


def refusal(limit: int) -> ApiError:
    return ApiError(
        429,
        f"Too many requests in flight for this account (at most {limit} at once); retry when one of them has finished.",
        "rate_limit_error",
        "concurrency_limit_exceeded",
        headers={"retry-after": str(RETRY_AFTER_S)},
    )


class AccountConcurrencyLimit:
    """ASGI middleware holding an account slot for each chat completion in flight.

    It sits inside the request-id middleware (so its 429 has an `x-request-id`) and
    finds the account with the app's token verifier, whose cache makes that a
    lookup for a token already seen.
    """

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        # Shared with the gRPC chat API (Deps.in_flight): one budget per account.
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            self.in_flight.limit
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in LIMITED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        account_id = await _account_id(scope)
        if account_id is None:
            await self.app(scope, receive, send)
            return
        if not self.in_flight.acquire(account_id):
            error = refusal(self.in_flight.limit)
            response = anthropic_error(error) if scope["path"] in ANTHROPIC_PATHS else error.response()
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.release(account_id)


async def _account_id(scope: Scope) -> str | None:
    headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in (b"authorization", b"x-api-key")}
    credential = presented(headers.get(b"authorization"), headers.get(b"x-api-key"))
    if credential is None:
        return None
    try:
        account_id: str = await scope["app"].state.deps.verifier.account_id(credential)
    except ApiError:
        return None
    return account_id
