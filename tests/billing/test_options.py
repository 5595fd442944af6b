from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from services.billing.options import BillingOptions


def test_defaults_to_the_longest_a_request_may_run() -> None:
    # Four attempts at the providers' 600 s total timeout, and 5 minutes for the usage event.
    assert BillingOptions.from_env({}).reservation_ttl == timedelta(minutes=45)
    assert BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": " "}) == BillingOptions()
    assert BillingOptions().reap_interval_s == 30.0
    longer = {"STEPBLEND_PROVIDER_TOTAL_TIMEOUT": "900", "STEPBLEND_MAX_ATTEMPTS": "2"}
    assert BillingOptions.from_env(longer).reservation_ttl == timedelta(seconds=2 * 900 + 300)


def test_a_ttl_shorter_than_a_request_is_kept_and_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="services.billing.options"):
        assert BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": "900"}).reservation_ttl == timedelta(
            minutes=15
        )
    assert "shorter than a request may run (2700 s)" in caplog.text


def test_ttl_from_the_environment() -> None:
    options = BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": "3600"})
    assert options.reservation_ttl == timedelta(hours=1)
    assert BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": "2"}).reap_interval_s == 0.2


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf"])
def test_nonsense_ttl_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="STEPBLEND_RESERVATION_TTL_SECONDS"):
        BillingOptions.from_env({"STEPBLEND_RESERVATION_TTL_SECONDS": value})


@pytest.mark.parametrize("value", ["inf", "1e300", "0"])
def test_a_nonsense_provider_timeout_names_its_variable(value: str) -> None:
    with pytest.raises(ValueError, match="STEPBLEND_PROVIDER_TOTAL_TIMEOUT"):
        BillingOptions.from_env({"STEPBLEND_PROVIDER_TOTAL_TIMEOUT": value})
