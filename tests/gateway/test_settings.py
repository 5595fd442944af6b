"""The gateway's own settings: read strictly, once; what they make of the deadline."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.gateway.settings import GatewaySettings


def test_defaults_and_values_read_from_the_environment() -> None:
    default = GatewaySettings.from_env({})
    assert default.max_concurrent_per_account == 64 and default.provider_total_timeout_s == 600.0
    read = GatewaySettings.from_env(
        {"STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT": "0", "STEPBLEND_PROVIDER_TOTAL_TIMEOUT": "20"}
    )
    assert read.max_concurrent_per_account == 0
    # One total per candidate providers may try, plus the margin.
    assert read.providers_deadline_s(3) == 3 * 20 + read.provider_deadline_margin_s
    assert read.providers_deadline_s(0) == 20 + read.provider_deadline_margin_s


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT", "lots"),
        ("STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT", "-1"),
        ("STEPBLEND_PROVIDER_TOTAL_TIMEOUT", "0"),
        ("STEPBLEND_PROVIDER_DEADLINE_MARGIN_SECONDS", "soon"),
    ],
)
def test_a_value_that_does_not_parse_stops_start_up_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        GatewaySettings.from_env({variable: value})
