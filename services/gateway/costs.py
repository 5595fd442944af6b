"""Money: exact Decimal USD from token counts and per-million prices; a float only
at the JSON edge."""

from __future__ import annotations

from decimal import Decimal

from stepblend.v1 import providers_pb2, router_pb2

_MILLION = Decimal(1_000_000)


def actual_cost(candidate: router_pb2.Candidate, usage: providers_pb2.Usage | None) -> Decimal | None:
    """What the request cost at the candidate's prices; None when no usage was reported."""
    if usage is None:
        return None
    return (
        Decimal(usage.prompt_tokens) * Decimal(candidate.input_price_per_mtok)
        + Decimal(usage.completion_tokens) * Decimal(candidate.output_price_per_mtok)
    ) / _MILLION


def as_json_number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
