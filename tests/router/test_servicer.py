from __future__ import annotations

from decimal import Decimal

import pytest

from services.router.catalog import Catalog
from services.router.routing import Decision, route
from services.router.servicer import decimal_str, to_decision_pb, to_route_request
from stepblend.v1 import router_pb2


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.00000001"), "0.00000001"),
        (Decimal("0.0075000"), "0.0075"),
        (Decimal("2.50"), "2.5"),
        (Decimal("10.00"), "10"),
        (Decimal("0"), "0"),
    ],
)
def test_decimal_str_is_plain_notation(value: Decimal, text: str) -> None:
    assert decimal_str(value) == text


def test_proto_round_trip(catalog: Catalog) -> None:
    message = router_pb2.RouteRequest(
        model="o4-mini",
        strategy="fastest",
        features=router_pb2.RequestFeatures(
            prompt_tokens=1200, max_output_tokens=300, needs_vision=True, needs_json_schema=True
        ),
        max_cost_usd="0.5",
        connected_providers=["openai"],
    )
    request = to_route_request(message)
    assert (request.model, request.strategy, request.max_cost_usd) == ("o4-mini", "fastest", "0.5")
    assert (request.prompt_tokens, request.max_output_tokens) == (1200, 300)
    assert (request.needs_tools, request.needs_vision, request.needs_json_schema) == (
        False,
        True,
        True,
    )
    assert request.connected_providers == frozenset({"openai"})

    decision = route(catalog, request)
    assert isinstance(decision, Decision)
    wire = to_decision_pb(decision)
    (candidate,) = wire.candidates
    assert wire.strategy_used == "force_model"
    assert candidate.estimated_cost_usd == "0.00264"  # 1200 x 1.10/M + 300 x 4.40/M
    assert candidate.output_budget == 300
    assert dict(candidate.param_renames) == {"max_tokens": "max_completion_tokens"}
