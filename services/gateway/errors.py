"""Errors in the OpenAI shape, `{"error": {"message", "type", "param", "code"}}`.

Every failure the gateway answers is an `ApiError`; the app's handlers render it
and add `x-should-retry: false` for errors that retrying cannot fix.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from services.common.vocab import RefusalCode
from stepblend.v1 import providers_pb2

# The router's refusal codes and the HTTP status and OpenAI error type each maps to
# (SPEC.md §4); a test checks every RefusalCode has one.
REFUSAL_HTTP: dict[str, tuple[int, str]] = {
    RefusalCode.MODEL_NOT_FOUND: (404, "invalid_request_error"),
    RefusalCode.PROVIDER_NOT_CONNECTED: (409, "invalid_request_error"),
    RefusalCode.NO_MODEL_UNDER_COST_CAP: (400, "invalid_request_error"),
    RefusalCode.NO_ELIGIBLE_MODEL: (400, "invalid_request_error"),
    RefusalCode.INVALID_REQUEST: (400, "invalid_request_error"),
    RefusalCode.STRATEGY_NOT_SUPPORTED: (400, "invalid_request_error"),
    RefusalCode.MODEL_NOT_ALLOWED: (403, "permission_error"),
}
# Errors that retrying cannot fix: the OpenAI SDKs obey `x-should-retry: false`. A
# rejected stored key stays rejected (a retry would only hit the provider again).
_NO_RETRY_CODES = frozenset(
    {
        "plan_limit_exceeded",
        "key_limit_exceeded",
        "budget_exceeded",
        "provider_not_connected",
        "provider_key_invalid",
    }
)


# Providers' domain errors at the HTTP edge: the status and OpenAI error type of each
# kind (the gRPC chat edge maps the status on, chat.py).
DOMAIN_HTTP: dict[int, tuple[int, str]] = {
    providers_pb2.ERROR_KIND_INVALID_REQUEST: (400, "invalid_request_error"),
    providers_pb2.ERROR_KIND_NOT_CONNECTED: (409, "invalid_request_error"),
    providers_pb2.ERROR_KIND_RATE_LIMITED: (429, "rate_limit_error"),
    providers_pb2.ERROR_KIND_TIMEOUT: (504, "api_error"),
    providers_pb2.ERROR_KIND_UPSTREAM_FAILED: (502, "api_error"),
    providers_pb2.ERROR_KIND_UNAVAILABLE: (503, "api_error"),
    providers_pb2.ERROR_KIND_INTERNAL: (500, "api_error"),
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        all_headers = dict(self.headers)
        if self.code in _NO_RETRY_CODES:
            all_headers["x-should-retry"] = "false"
        return Response(orjson.dumps(self.body()), self.status, all_headers, media_type="application/json")


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, message, "authentication_error", "invalid_api_key")


def unavailable(message: str, code: str = "service_unavailable") -> ApiError:
    return ApiError(503, message, "api_error", code)


def from_domain(error: providers_pb2.Error, headers: dict[str, str] | None = None) -> ApiError:
    """A providers `Error` as the HTTP error the client gets; one that retrying cannot
    fix carries `x-should-retry: false`."""
    status, kind = DOMAIN_HTTP.get(error.kind, (502, "api_error"))
    extra = dict(headers or {})
    if not error.retryable:
        extra["x-should-retry"] = "false"
    return ApiError(status, error.message, kind, error.code or None, error.param or None, extra)
