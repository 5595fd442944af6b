"""Settings are read once, strictly: a value that does not parse stops start-up
naming its variable; an empty variable is unset; the process environment is
never written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.config import ConfigError, Settings


def test_defaults_and_renamed_variables() -> None:
    settings = Settings.from_env(
        {
            "STEPBLEND_JWT_LIFETIME_SECONDS": "60",
            "STEPBLEND_SSE_KEEPALIVE_SECONDS": " 2.5 ",
            "STEPBLEND_JWT_PRIVATE_KEY": "/keys/jwt.pem",
            "STEPBLEND_OPENAI_BASE_URL": "http://127.0.0.1:9001/v1/",
            "STEPBLEND_CHAT_PORT": "",
        }
    )
    assert settings.jwt_lifetime_s == 60
    assert settings.sse_keepalive_s == 2.5
    assert settings.jwt_private_key_file == "/keys/jwt.pem"
    assert settings.provider_base_urls == {"openai": "http://127.0.0.1:9001/v1"}
    assert settings.chat_port is None
    assert settings.signup_enabled is True
    assert settings.data_dir == Path(".stepblend")


@pytest.mark.parametrize("value", ["off", "false", "0", "no"])
def test_false_spellings(value: str) -> None:
    assert Settings.from_env({"STEPBLEND_SIGNUP_ENABLED": value}).signup_enabled is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STEPBLEND_SIGNUP_ENABLED", "maybe"),
        ("STEPBLEND_BILLING_FAIL_OPEN", "enabled"),
        ("STEPBLEND_PORT", "eighty"),
        ("STEPBLEND_PORT", "70000"),
        ("STEPBLEND_JWT_LIFETIME_SECONDS", "-5"),
    ],
)
def test_a_value_that_does_not_parse_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_settings_are_immutable() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ValueError):
        settings.port = 1  # type: ignore[misc]


def test_a_service_refuses_to_start_on_a_bad_boolean(tmp_path: Path) -> None:
    env = dict(os.environ, STEPBLEND_SIGNUP_ENABLED="maybe", STEPBLEND_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "stepblend", "serve", "gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "STEPBLEND_SIGNUP_ENABLED='maybe'" in result.stderr


def test_a_renamed_variable_from_the_process_environment_is_named_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPBLEND_JWT_LIFETIME_SECONDS", "soon")
    with pytest.raises(ConfigError, match=r"^invalid configuration: STEPBLEND_JWT_LIFETIME_SECONDS='soon'"):
        Settings.from_env()
