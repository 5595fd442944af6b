"""The CLI's account and key commands, acting through the running services over
gRPC (so their caches and events stay true), found from the environment or the
data dir's services.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import grpc

from services.common.config import Settings
from services.common.grpcio import TOKEN_HEADER
from services.common.tls import InternalTls
from services.gateway.apikeys import make_key, render
from services.gateway.auth import Keyring
from stepblend.v1 import billing_pb2, billing_pb2_grpc, providers_pb2, providers_pb2_grpc

from .datadir import read_or_create

TIMEOUT_S = 10.0
#: What `stepblend vendor allow` stores for a server that checks no key (sent as its
#: bearer token, which such a server ignores).
NO_KEY = "none"


def account_vendors() -> frozenset[str]:
    """The packaged vendors an account connects itself: `stepblend vendor` refuses
    them. Every other name (`local`, `demo`, the operator's file's) is operator-only;
    the providers service refuses a name it does not know."""
    import tomllib

    from services.common.vendors_file import PACKAGED_VENDORS

    with PACKAGED_VENDORS.open("rb") as f:
        rows = tomllib.load(f)["providers"]
    return frozenset(name for name, row in rows.items() if not row.get("operator_only", False))


@dataclass
class Control:
    billing_addr: str
    providers_addr: str
    internal_token: str
    data_dir: Path
    # The environment's settings as `find` saw them; the JWT ones are read on first use.
    settings: Settings

    @cached_property
    def keyring(self) -> Keyring:
        """Only the commands that print a token need it (and the JWT secret): the
        others run where only the operator's internal token is (Kubernetes' billing pod)."""
        return Keyring.from_settings(_token_settings(self.settings, self.data_dir))

    @classmethod
    def find(cls, data_dir: Path) -> Control:
        recorded: dict[str, str] = {}
        services = data_dir / "services.json"
        if services.exists():
            recorded = json.loads(services.read_text())
        billing = os.environ.get("STEPBLEND_BILLING_ADDR") or recorded.get("billing")
        providers = os.environ.get("STEPBLEND_PROVIDERS_ADDR") or recorded.get("providers")
        if not billing or not providers:
            raise SystemExit(
                f"No running StepBlend found: {services} is missing and STEPBLEND_BILLING_ADDR / "
                "STEPBLEND_PROVIDERS_ADDR are unset. Point at the data dir `stepblend up` uses with "
                "`stepblend --data-dir DIR ...` or STEPBLEND_DATA_DIR=DIR, or start it with `stepblend up`."
            )
        return cls(
            billing_addr=billing,
            providers_addr=providers,
            internal_token=read_or_create(data_dir, "STEPBLEND_INTERNAL_TOKEN", create=False),
            data_dir=data_dir,
            settings=Settings.from_env(),
        )

    def _channel(self, address: str) -> grpc.Channel:
        """TLS when the environment names the internal CA (services/common/tls.py)."""
        tls = InternalTls.from_settings(self.settings)
        credentials = tls.channel_credentials() if tls else None
        if credentials is not None:
            return grpc.secure_channel(address, credentials)
        return grpc.insecure_channel(address)

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return ((TOKEN_HEADER, self.internal_token),)

    def _billing(self, channel: grpc.Channel) -> billing_pb2_grpc.BillingStub:
        return billing_pb2_grpc.BillingStub(channel)

    def create_account(self, email: str, plan: str, password: str = "") -> str:
        """Create the account; return its id."""
        with self._channel(self.billing_addr) as channel:
            response = self._billing(channel).CreateAccount(
                billing_pb2.CreateAccountRequest(email=email, plan=plan, password=password),
                metadata=self._metadata,
                timeout=TIMEOUT_S,
            )
        return str(response.account.account_id)

    def account_id(self, email: str) -> str:
        with self._channel(self.billing_addr) as channel:
            response = self._billing(channel).GetAccount(
                billing_pb2.GetAccountRequest(email=email), metadata=self._metadata, timeout=TIMEOUT_S
            )
        return str(response.account.account_id)

    def token(self, account_id: str) -> str:
        return self.keyring.issue(account_id)

    def set_plan(self, email: str, plan: str) -> str:
        with self._channel(self.billing_addr) as channel:
            response = self._billing(channel).SetPlan(
                billing_pb2.SetPlanRequest(email=email, plan=plan), metadata=self._metadata, timeout=TIMEOUT_S
            )
        return str(response.account.plan)

    def set_disabled(self, email: str, disabled: bool) -> None:
        with self._channel(self.billing_addr) as channel:
            self._billing(channel).SetDisabled(
                billing_pb2.SetDisabledRequest(email=email, disabled=disabled),
                metadata=self._metadata,
                timeout=TIMEOUT_S,
            )

    def set_key(self, account_id: str, provider: str, api_key: str) -> str:
        with self._channel(self.providers_addr) as channel:
            # The operator's own Put: it may also connect the operator's vendors (local, demo).
            response = providers_pb2_grpc.KeysStub(channel).PutOperatorKey(
                providers_pb2.PutKeyRequest(account_id=account_id, provider=provider, api_key=api_key),
                metadata=self._metadata,
                timeout=TIMEOUT_S,
            )
        # A multi-field key (azure) shows each field, the secret ones masked.
        return str(response.fields_json or response.masked_key)

    def list_keys(self, account_id: str) -> list[tuple[str, str]]:
        """(provider, masked key, or the masked fields of a multi-field key) for each connected provider."""
        with self._channel(self.providers_addr) as channel:
            response = providers_pb2_grpc.KeysStub(channel).List(
                providers_pb2.ListKeysRequest(account_id=account_id), metadata=self._metadata, timeout=TIMEOUT_S
            )
        return [(key.provider, key.fields_json or key.masked_key) for key in response.keys]

    def create_api_key(self, account_id: str, name: str, limits: billing_pb2.ApiKeyLimits) -> tuple[str, str]:
        """A new API key of the account (SPEC.md §7): (its id, the key, shown this once)."""
        pepper = self.settings.api_key_pepper or read_or_create(self.data_dir, "STEPBLEND_API_KEY_PEPPER", create=False)
        key, key_digest, hint = make_key(pepper.encode())
        request = billing_pb2.CreateApiKeyRequest(
            account_id=account_id, name=name, digest=key_digest, hint=hint, limits=limits
        )
        with self._channel(self.billing_addr) as channel:
            created = billing_pb2_grpc.ApiKeysStub(channel).Create(request, metadata=self._metadata, timeout=TIMEOUT_S)
        return str(created.id), key

    def list_api_keys(self, account_id: str) -> list[dict[str, Any]]:
        with self._channel(self.billing_addr) as channel:
            response = billing_pb2_grpc.ApiKeysStub(channel).List(
                billing_pb2.ListApiKeysRequest(account_id=account_id), metadata=self._metadata, timeout=TIMEOUT_S
            )
        return [render(key) for key in response.keys]

    def revoke_api_key(self, account_id: str, key_id: str) -> None:
        with self._channel(self.billing_addr) as channel:
            billing_pb2_grpc.ApiKeysStub(channel).Revoke(
                billing_pb2.RevokeApiKeyRequest(account_id=account_id, id=key_id),
                metadata=self._metadata,
                timeout=TIMEOUT_S,
            )

    def allow_vendor(self, account_id: str, vendor: str, api_key: str = "") -> str:
        """Connect an operator-only vendor for the account (its key, or none); the masked key."""
        if vendor in account_vendors():
            raise SystemExit(f"stepblend: {vendor} is connected by the account itself (stepblend keys set)")
        return self.set_key(account_id, vendor, api_key or NO_KEY)

    def revoke_vendor(self, account_id: str, vendor: str) -> bool:
        """Disconnect an operator-only vendor; whether it was allowed."""
        if vendor in account_vendors():
            raise SystemExit(f"stepblend: {vendor} is connected by the account itself (stepblend keys delete)")
        return self.delete_key(account_id, vendor)

    def allowed_vendors(self, account_id: str) -> list[str]:
        """The operator-only vendors the account is allowed."""
        own = account_vendors()
        return [provider for provider, _masked in self.list_keys(account_id) if provider not in own]

    def delete_key(self, account_id: str, provider: str) -> bool:
        """Whether a key was connected (and is now deleted)."""
        with self._channel(self.providers_addr) as channel:
            response = providers_pb2_grpc.KeysStub(channel).Delete(
                providers_pb2.DeleteKeyRequest(account_id=account_id, provider=provider),
                metadata=self._metadata,
                timeout=TIMEOUT_S,
            )
        return bool(response.deleted)


def _token_settings(settings: Settings, data_dir: Path) -> Settings:
    """The environment's JWT settings; the data dir's secret when none is set."""
    if settings.jwt_secret or settings.jwt_private_key_file:
        return settings
    return settings.model_copy(update={"jwt_secret": read_or_create(data_dir, "STEPBLEND_JWT_SECRET", create=False)})
