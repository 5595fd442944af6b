"""Errors in the OpenAI shape, `{"error": {"message", "type", "param", "code"}}`.

Every failure the gateway answers is an `ApiError`; the app's handlers render it
and add `x-should-retry: false` for errors that retrying cannot fix.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from services.common.vocab import RefusalCode

# The router's refusal codes and the HTTP status each maps to (SPEC.md §4); a test
# checks every RefusalCode has one.
REFUSAL_STATUS: dict[str, int] = {
    RefusalCode.MODEL_NOT_FOUND: 404,
    RefusalCode.PROVIDER_NOT_CONNECTED: 409,
    RefusalCode.NO_MODEL_UNDER_COST_CAP: 400,
    RefusalCode.NO_ELIGIBLE_MODEL: 400,
    RefusalCode.INVALID_REQUEST: 400,
}
# Errors that retrying cannot fix: the OpenAI SDKs obey `x-should-retry: false`. A
# rejected stored key stays rejected (a retry would only hit the provider again).
_NO_RETRY_CODES = frozenset({"plan_limit_exceeded", "provider_not_connected", "provider_key_invalid"})


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
