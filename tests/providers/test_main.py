from __future__ import annotations

import pytest

from services.common.config import ConfigError, Settings
from services.providers.main import serve
from services.providers.settings import ProvidersSettings
from services.providers.timeouts import Timeouts
from services.providers.vault import new_kek, parse_kek


async def test_serve_requires_the_key_encryption_key() -> None:
    settings = Settings.from_env().model_copy(update=dict(key_encryption_key=""))
    with pytest.raises(RuntimeError, match="STEPBLEND_KEY_ENCRYPTION_KEY"):
        await serve(settings)


async def test_serve_refuses_a_malformed_key_encryption_key() -> None:
    settings = Settings.from_env().model_copy(update=dict(key_encryption_key="c2hvcnQ="))
    with pytest.raises(ValueError, match="32 bytes"):
        await serve(settings)


def test_provider_settings_from_the_environment() -> None:
    assert ProvidersSettings.from_env({}).timeouts() == Timeouts(connect=5.0, read=60.0, total=600.0, first_token=60.0)
    env = {
        "STEPBLEND_PROVIDER_CONNECT_TIMEOUT": "2",
        "STEPBLEND_PROVIDER_READ_TIMEOUT": "30.5",
        "STEPBLEND_PROVIDER_TTFT_TIMEOUT": "15",
        "STEPBLEND_PROVIDER_TOTAL_TIMEOUT": " ",
    }
    own = ProvidersSettings.from_env(env)
    assert own.timeouts() == Timeouts(connect=2.0, read=30.5, total=600.0, first_token=15.0)
    assert own.previous_keks() == []
    previous = [new_kek(), new_kek()]
    own = ProvidersSettings.from_env({"STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS": ",".join(previous)})
    assert own.previous_keks() == [parse_kek(k) for k in previous]
    assert previous[0] not in repr(own) and previous[0] not in str(own)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STEPBLEND_PROVIDER_TOTAL_TIMEOUT", "0"),
        ("STEPBLEND_PROVIDER_TTFT_TIMEOUT", "soon"),
        ("STEPBLEND_PROVIDER_CONNECT_TIMEOUT", "-1"),
        ("STEPBLEND_PROVIDER_READ_TIMEOUT", "1m"),
    ],
)
def test_a_timeout_that_does_not_parse_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        ProvidersSettings.from_env({variable: value})


async def test_serve_takes_the_previous_keys_from_its_settings() -> None:
    settings = Settings.from_env().model_copy(update=dict(key_encryption_key=new_kek()))
    own = ProvidersSettings.from_env({"STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS": "c2hvcnQ="})
    with pytest.raises(ValueError, match="32 bytes"):
        await serve(settings, own)
