"""The shared vocabulary (services/common/vocab.py) is complete wherever it is
looked up: a value one service sends is never one another silently ignores."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.events import AttemptRecord
from services.common.vocab import Outcome, RefusalCode, Strategy
from services.gateway.caches import STRATEGIES
from services.gateway.errors import REFUSAL_HTTP
from services.router.stats import FAILURE_OUTCOMES, NEUTRAL_OUTCOMES, SUCCESS_OUTCOME
from services.router.strategies import STRATEGY_NAMES


def test_every_refusal_code_has_an_http_status() -> None:
    assert set(REFUSAL_HTTP) == set(RefusalCode)


def test_the_router_classifies_every_outcome_once() -> None:
    classes = [{SUCCESS_OUTCOME}, set(FAILURE_OUTCOMES), set(NEUTRAL_OUTCOMES)]
    assert set().union(*classes) == set(Outcome)
    assert sum(len(c) for c in classes) == len(Outcome)


def test_an_outcome_nobody_knows_makes_the_event_invalid() -> None:
    assert AttemptRecord(provider="openai", model="gpt-4o", outcome="timeout").outcome is Outcome.TIMEOUT
    with pytest.raises(ValidationError):
        AttemptRecord(provider="openai", model="gpt-4o", outcome="melted")


def test_every_strategy_is_listed_and_accepted_in_both_spellings() -> None:
    assert STRATEGIES == ("lowest-cost", "balanced", "fastest", "max-reliability")
    for strategy in Strategy:
        assert {strategy.value, strategy.value.replace("_", "-")} <= STRATEGY_NAMES


def test_every_domain_error_kind_has_an_http_status() -> None:
    from services.gateway.errors import DOMAIN_HTTP
    from stepblend.v1 import providers_pb2

    kinds = set(providers_pb2.ErrorKind.values()) - {providers_pb2.ERROR_KIND_UNSPECIFIED}
    assert set(DOMAIN_HTTP) == kinds


@pytest.mark.parametrize(
    ("kind", "retryable", "status", "should_retry"),
    [
        ("ERROR_KIND_INVALID_REQUEST", False, 400, "false"),
        ("ERROR_KIND_NOT_CONNECTED", False, 409, "false"),
        ("ERROR_KIND_RATE_LIMITED", True, 429, None),
        ("ERROR_KIND_TIMEOUT", True, 504, None),
        ("ERROR_KIND_UPSTREAM_FAILED", False, 502, "false"),
        ("ERROR_KIND_UNAVAILABLE", True, 503, None),
    ],
)
def test_a_domain_error_at_the_http_edge(kind: str, retryable: bool, status: int, should_retry: str | None) -> None:
    from services.gateway.errors import from_domain
    from stepblend.v1 import providers_pb2

    error = providers_pb2.Error(kind=providers_pb2.ErrorKind.Value(kind), code="c", message="m", retryable=retryable)
    response = from_domain(error).response()
    assert response.status_code == status
    assert response.headers.get("x-should-retry") == should_retry
