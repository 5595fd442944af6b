"""One attempt's fixed inputs, and which adapter speaks for it.

A candidate is spoken to in OpenAI's dialect through its vendor's adapter, unless
the client's own dialect is the one the vendor speaks: an Anthropic Messages body
for a vendor of wire format `anthropic` passes through (adapters/anthropic_native),
and an embeddings body goes to OpenAI's embeddings API (adapters/openai_embeddings)
or Gemini's (adapters/gemini_embeddings).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from services.common.vocab import Outcome
from services.providers.adapters import Adapter, RequestRefused, UpstreamRequest, parse_body
from services.providers.adapters.anthropic import Anthropic
from services.providers.adapters.anthropic_native import NATIVE_DIALECT, NativeAnthropic
from services.providers.adapters.base import FrameDecoder, OwnTransport, ProviderError
from services.providers.adapters.gemini import Gemini
from services.providers.adapters.gemini_embeddings import GeminiEmbeddings
from services.providers.adapters.openai_compatible import OpenAICompatible
from services.providers.adapters.openai_embeddings import EMBEDDINGS_DIALECT, OpenAIEmbeddings
from services.providers.adapters.sse import SseDecoder
from services.providers.credentials import NoDeployment
from services.providers.genai import AttemptTelemetry
from services.providers.outcomes import Failed, attempt
from services.providers.vendors import Vendor
from stepblend.v1 import providers_pb2, router_pb2

__all__ = ["Call", "completion_id_for", "for_account", "native_body", "speaker"]


def completion_id_for(request_id: str) -> str:
    return request_id if request_id.startswith("chatcmpl-") else f"chatcmpl-{request_id}"


def native_body(request: providers_pb2.ExecuteRequest) -> dict[str, Any] | None:
    """The client's own-dialect body, when it sent one StepBlend can pass through;
    raises `RequestRefused` when it is not a JSON object."""
    if request.native_dialect not in (NATIVE_DIALECT, EMBEDDINGS_DIALECT) or not request.native_body:
        return None
    return parse_body(request.native_body)


def speaker(
    vendor: Vendor, request: providers_pb2.ExecuteRequest, body: dict[str, Any], native: dict[str, Any] | None
) -> tuple[Adapter, dict[str, Any]]:
    """The adapter for `vendor` and the body it takes: the native one when the vendor
    speaks the client's dialect, else the OpenAI one."""
    if request.native_dialect == EMBEDDINGS_DIALECT:
        encoding = native.get("encoding_format") if native is not None else None
        encoding_format = encoding if isinstance(encoding, str) else "float"
        if native is not None and isinstance(vendor.adapter, OpenAICompatible):
            return OpenAIEmbeddings(vendor.adapter, encoding_format), native
        if native is not None and isinstance(vendor.adapter, Gemini):
            return GeminiEmbeddings(vendor.adapter, encoding_format), native
        # The router offers embedding rows of these wire formats only.
        raise RequestRefused(f"{vendor.name} serves no embeddings through StepBlend", "model")
    if native is not None and isinstance(vendor.adapter, Anthropic):
        return NativeAnthropic(vendor.adapter, dict(request.native_headers)), native
    return vendor.adapter, body


def for_account(
    vendor: Vendor, candidate: router_pb2.Candidate, secret: SecretStr
) -> tuple[Vendor, router_pb2.Candidate, SecretStr]:
    """For a vendor whose keys have several fields: the vendor on the account's
    endpoint (Azure's) or region (Bedrock's `{region}` in the base URL), the candidate
    on the account's deployment of its model (Azure's), and the key;
    `provider_not_connected` (the walk goes on) when the key maps no deployment to it."""
    if vendor.fields is None:
        return vendor, candidate, secret
    try:
        bound = vendor.fields.bind(secret, candidate.model)
    except NoDeployment as exc:
        raise Failed(Outcome.PROVIDER_NOT_CONNECTED, detail=str(exc)) from None
    base_url = bound.base_url or vendor.base_url.replace("{region}", bound.region)
    if not bound.deployment:
        return dataclasses.replace(vendor, base_url=base_url), candidate, bound.api_key
    on_deployment = router_pb2.Candidate()
    on_deployment.CopyFrom(candidate)
    on_deployment.upstream_model = bound.deployment
    return dataclasses.replace(vendor, base_url=base_url), on_deployment, bound.api_key


@dataclass(frozen=True)
class Call:
    """One attempt's fixed inputs."""

    request: providers_pb2.ExecuteRequest
    candidate: router_pb2.Candidate
    vendor: Vendor
    adapter: Adapter
    api_key: SecretStr
    upstream: UpstreamRequest
    completion_id: str
    created: int
    started: float
    telemetry: AttemptTelemetry

    def headers(self, stream: bool) -> dict[str, str]:
        """The request's headers; an adapter with its own transport signs them over
        the final URL and body (Bedrock's SigV4)."""
        if isinstance(self.adapter, OwnTransport):
            headers = {"content-type": "application/json"}
            url = self.vendor.url(self.upstream.path)
            return self.adapter.sign(url, headers, self.upstream.content, self.api_key.get_secret_value())
        accept = "text/event-stream" if stream else "application/json"
        return {
            **self.adapter.auth_headers(self.api_key.get_secret_value()),
            "content-type": "application/json",
            "accept": accept,
        }

    def frame_decoder(self) -> FrameDecoder:
        """The decoder of this call's streamed body: SSE unless the adapter frames it otherwise."""
        return self.adapter.frame_decoder() if isinstance(self.adapter, OwnTransport) else SseDecoder()

    def error_details(self, data: bytes, headers: Mapping[str, str]) -> ProviderError:
        """What the provider's error answer says (some put its type in a header)."""
        if isinstance(self.adapter, OwnTransport):
            return self.adapter.error_of(data, headers)
        return self.adapter.error_details(data)

    def ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def ok(self, status: int) -> providers_pb2.ExecuteEvent:
        elapsed = self.ms()
        return attempt(self.candidate, Outcome.OK, status, elapsed, elapsed)
