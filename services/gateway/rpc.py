"""gRPC failures of StepBlend's own services, as the client sees them."""

from __future__ import annotations

import grpc

from .errors import ApiError, unavailable

# Call metadata: the internal token, sent explicitly on every call (cheaper than
# a client interceptor, which costs an extra task per call in grpc.aio).
Metadata = tuple[tuple[str, str], ...]


def rpc_error(service: str, exc: grpc.aio.AioRpcError) -> ApiError:
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ApiError(504, f"StepBlend's {service} service timed out.", "api_error", "timeout")
    return unavailable(f"StepBlend's {service} service is unavailable; try again shortly.", f"{service}_unavailable")
