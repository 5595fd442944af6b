"""Azure OpenAI's edges, in front of the mock's OpenAI wire format: the resource's
`POST /openai/deployments/{deployment}/chat/completions?api-version=...` (also under
`/azure`, so one mock stands for a resource), the key in an `api-key` header, and
the content filter's 400 for a prompt containing `FILTER_ME`, and Azure's 404
`DeploymentNotFound` for a deployment named `missing-…` (one the resource lacks).

What Azure answers past these edges is OpenAI's wire format (the `azure` flavour adds
its `prompt_filter_results`); the deployment name is what the answer's `model` says.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any
from urllib.parse import parse_qs

import orjson

from stepblend.mockprovider.asgi import Scope

PATH = re.compile(r"^(?:/azure)?/openai/deployments/(?P<deployment>[A-Za-z0-9._-]+)/chat/completions$")
FILTER_ME = "FILTER_ME"

# Azure's own words (learn.microsoft.com/azure/ai-services/openai/reference).
# Azure's words for a deployment the resource does not have.
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment "
    "within the last 5 minutes, please wait a moment and try again."
)
_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
_FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry."
)
FILTER_REPORT = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def refusal(scope: Scope, raw: bytes, reject_keys: Collection[str]) -> tuple[int, bytes] | None:
    """Azure's answer when the request does not get past its edges, else None."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if not query.get("api-version"):
        return 404, orjson.dumps({"error": {"code": "404", "message": "Resource not found"}})
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    key = headers.get("api-key", "")
    if not key or key in reject_keys:
        return 401, orjson.dumps({"error": {"code": "401", "message": _DENIED}})
    if FILTER_ME.encode() in raw:
        return 400, orjson.dumps(_filtered())
    if "/deployments/missing-" in scope["path"]:
        return 404, orjson.dumps({"error": {"code": "DeploymentNotFound", "message": _NO_DEPLOYMENT}})
    return None


def as_openai(scope: Scope, raw: bytes, deployment: str) -> tuple[Scope, bytes]:
    """The request as the mock's OpenAI edge takes it: a Bearer key, the deployment as
    the model (what was received is kept in `mock.received`, for the record)."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
    key = next((v for k, v in scope["headers"] if k.lower() == b"api-key"), b"")
    headers.append((b"authorization", b"Bearer " + key))
    rewritten = {**scope, "headers": headers, "mock.received": (scope["headers"], raw)}
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return rewritten, raw
    if isinstance(body, dict):
        body["model"] = deployment
    return rewritten, orjson.dumps(body)


def _filtered() -> dict[str, Any]:
    report = {**FILTER_REPORT, "violence": {"filtered": True, "severity": "high"}}
    return {
        "error": {
            "message": _FILTERED,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": report},
        }
    }
