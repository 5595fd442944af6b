from __future__ import annotations

import pytest

from services.common.config import Settings
from services.providers.main import serve
from services.providers.timeouts import Timeouts


async def test_serve_requires_the_key_encryption_key() -> None:
    settings = Settings.from_env().model_copy(update=dict(key_encryption_key=""))
    with pytest.raises(RuntimeError, match="STEPBLEND_KEY_ENCRYPTION_KEY"):
        await serve(settings)


async def test_serve_refuses_a_malformed_key_encryption_key() -> None:
    settings = Settings.from_env().model_copy(update=dict(key_encryption_key="c2hvcnQ="))
    with pytest.raises(ValueError, match="32 bytes"):
        await serve(settings)


def test_timeouts_from_environment() -> None:
    assert Timeouts.from_env({}) == Timeouts(connect=5.0, read=60.0, total=600.0, first_token=60.0)
    env = {
        "STEPBLEND_PROVIDER_CONNECT_TIMEOUT": "2",
        "STEPBLEND_PROVIDER_READ_TIMEOUT": "30.5",
        "STEPBLEND_PROVIDER_TTFT_TIMEOUT": "15",
    }
    assert Timeouts.from_env(env) == Timeouts(connect=2.0, read=30.5, total=600.0, first_token=15.0)
    with pytest.raises(ValueError):
        Timeouts.from_env({"STEPBLEND_PROVIDER_TOTAL_TIMEOUT": "0"})
    with pytest.raises(ValueError, match="STEPBLEND_PROVIDER_TTFT_TIMEOUT"):
        Timeouts.from_env({"STEPBLEND_PROVIDER_TTFT_TIMEOUT": "soon"})
