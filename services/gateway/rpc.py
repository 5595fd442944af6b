"""Calls to StepBlend's own services (router, billing, providers, keys), one way:
every call has a deadline, and a failure becomes the domain error the client sees.

`call` is the whole of a unary call: the deadline applied, the metadata sent, and
an `AioRpcError` turned into an `ApiError` — the one `errors` names for its status
(a refusal the caller expects, such as ALREADY_EXISTS), else `rpc_error`'s 503/504
as a `ServiceFailed` that keeps the gRPC status for a caller that tells them apart.
Providers' Execute stream gets its deadline where it is opened (execution.py) and
its errors mapped by `rpc_error` where they surface, mid-stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

from services.common.mux import MuxClient

from .errors import ApiError

__all__ = ["Metadata", "ServiceFailed", "call", "call_on", "rpc_error"]

log = logging.getLogger(__name__)

# Call metadata: the internal token, sent explicitly on every call (cheaper than
# a client interceptor, which costs an extra task per call in grpc.aio).
Metadata = tuple[tuple[str, str], ...]

R = TypeVar("R")


class ServiceFailed(ApiError):
    """One of StepBlend's services could not answer: 503, or 504 when it timed out."""

    def __init__(self, service: str, code: grpc.StatusCode) -> None:
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            super().__init__(504, f"StepBlend's {service} service timed out.", "api_error", "timeout")
        else:
            super().__init__(
                503,
                f"StepBlend's {service} service is unavailable; try again shortly.",
                "api_error",
                f"{service}_unavailable",
            )
        self.grpc_code = code


def rpc_error(service: str, exc: grpc.aio.AioRpcError) -> ServiceFailed:
    """The client's 503 or 504; the operator's log line says how the call ended."""
    log.warning("a call to StepBlend's %s service failed: %s: %s", service, exc.code().name, exc.details())
    return ServiceFailed(service, exc.code())


async def call(
    method: Callable[..., Awaitable[R]],
    request: Any,
    *,
    service: str,
    timeout_s: float,
    metadata: Metadata,
    errors: Mapping[grpc.StatusCode, Callable[[str], ApiError]] | None = None,
) -> R:
    """`method(request)` within `timeout_s`; an error status as the domain error:
    `errors[status](details)` when named there, else `ServiceFailed`."""
    try:
        return await method(request, timeout=timeout_s, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        expected = errors.get(exc.code()) if errors else None
        if expected is not None:
            raise expected(exc.details() or "") from exc
        raise rpc_error(service, exc) from exc


async def call_on(calls: MuxClient[R], request: Any, *, service: str, timeout_s: float) -> R:
    """`request` as a message on the service's call stream (services/common/mux.py),
    its errors mapped as `call` maps a unary call's."""
    try:
        return await calls.call(request, timeout_s)
    except grpc.aio.AioRpcError as exc:
        raise rpc_error(service, exc) from exc
