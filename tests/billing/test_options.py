from __future__ import annotations

from datetime import timedelta

import pytest

from services.billing.options import BillingOptions


def test_defaults_to_fifteen_minutes() -> None:
    assert BillingOptions.from_env({}).reservation_ttl == timedelta(minutes=15)
    assert BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": " "}) == BillingOptions()
    assert BillingOptions().reap_interval_s == 30.0


def test_ttl_from_the_environment() -> None:
    options = BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": "3600"})
    assert options.reservation_ttl == timedelta(hours=1)
    assert BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": "2"}).reap_interval_s == 0.2


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf"])
def test_nonsense_ttl_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="STEPBLEND_RESERVATION_TTL_SECONDS"):
        BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": value})
