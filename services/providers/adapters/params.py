"""Shaping the client's body for one candidate, the same way for every wire format:
StepBlend's own fields never go upstream; the catalog's renames are applied; a
parameter the model or the vendor refuses is answered here with a clear 400 rather
than sent to fail upstream — unless its value is null or OpenAI's default, which
says nothing, so it is dropped instead (SDKs often send `n: 1`, `logprobs: false`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.common.inert import is_inert
from services.providers.adapters.base import RequestRefused
from stepblend.v1 import router_pb2


def without_own_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the body without `stepblend_*` fields (StepBlend's alone)."""
    return {key: value for key, value in body.items() if not key.startswith("stepblend_")}


def unsupported(param: str, where: str) -> RequestRefused:
    """The 400 for a parameter `where` (a model, a provider) does not take."""
    return RequestRefused(
        f"Unsupported parameter: '{param}' is not supported with {where}.", param, "unsupported_parameter"
    )


def apply_renames(out: dict[str, Any], renames: Mapping[str, str]) -> None:
    """Move each renamed parameter's value to its new name (a value already there wins)."""
    for old, new in renames.items():
        if old in out:
            value = out.pop(old)
            if out.get(new) is None:
                out[new] = value


def refuse_or_drop(out: dict[str, Any], params: Iterable[str], where: str) -> None:
    """Drop each of `params` when inert; refuse the request when one says something."""
    for param in params:
        if param not in out:
            continue
        if not is_inert(param, out[param]):
            raise unsupported(param, where)
        del out[param]


def apply_catalog(out: dict[str, Any], candidate: router_pb2.Candidate) -> None:
    """The catalog row's renames and refusals for this model."""
    apply_renames(out, candidate.param_renames)
    refuse_or_drop(out, candidate.unsupported_params, f"the model '{candidate.model}'")


def output_limit(given: Mapping[str, Any]) -> int | None:
    """The client's `max_completion_tokens` (or older `max_tokens`); None when it set
    neither; `RequestRefused` for one that is not a positive integer."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = given.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RequestRefused(f"{name} must be a positive integer", name)
        return value
    return None
