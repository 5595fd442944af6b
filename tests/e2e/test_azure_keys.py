"""Azure OpenAI's key of several fields (SPEC.md §11) through the running system: the
operator's `stepblend keys set EMAIL azure -` reads the JSON object from standard
input, and the account's `PUT /account/keys/azure` refuses an endpoint that is not an
Azure resource (the mock provider's own address among them), naming the field.
(Calls to an account's Azure resource, against the mock: tests/providers/test_azure.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx

from tests.support.system import System

API_KEY = "4f1c0d2e9b8a7c6d5e4f3a2b1c0d5eed"


def _cli(system: System, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepblend", *args],
        env=system.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_operator_sets_an_azure_key_from_a_json_object_on_stdin(system: System) -> None:
    email = f"azure-{uuid.uuid4().hex[:8]}@example.com"
    system.cli("account", "create", email)
    fields = {
        "api_key": API_KEY,
        "endpoint": "https://contoso.openai.azure.com",
        "deployments": {"gpt-4o": "contoso-4o"},
    }
    set_ = _cli(system, "keys", "set", email, "azure", "-", stdin=json.dumps(fields, indent=2) + "\n")
    assert set_.returncode == 0, set_.stderr
    assert API_KEY not in set_.stdout
    assert json.loads(set_.stdout) == {**fields, "api_key": "…5eed"}
    listed = _cli(system, "keys", "list", email)
    provider, shown = listed.stdout.strip().split("\t")
    assert (provider, json.loads(shown)["api_key"]) == ("azure", "…5eed")

    wrong = _cli(system, "keys", "set", email, "azure", "-", stdin=json.dumps({**fields, "endpoint": system.mock_url}))
    assert wrong.returncode != 0 and "endpoint" in wrong.stderr


def test_an_account_cannot_point_its_azure_key_at_another_address(system: System) -> None:
    token = system.cli("account", "create", f"azure-{uuid.uuid4().hex[:8]}@example.com")
    for endpoint in (system.mock_url, "https://169.254.169.254", "https://contoso.openai.azure.com.example.net"):
        refused = httpx.put(
            f"{system.base_url}/account/keys/azure",
            headers={"authorization": f"Bearer {token}"},
            json={"api_key": API_KEY, "endpoint": endpoint, "deployments": {"gpt-4o": "contoso-4o"}},
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "endpoint"
    listed = httpx.get(f"{system.base_url}/account/keys", headers={"authorization": f"Bearer {token}"})
    assert listed.json()["data"] == []
