"""The key vault: the account's provider keys, encrypted at rest.

Each key is sealed with AES-GCM under the key-encryption key
(`STEPBLEND_KEY_ENCRYPTION_KEY`, 32 bytes URL-safe base64) with a fresh random
12-byte nonce stored before the ciphertext, and with `account_id|provider` as
associated data: a sealed key copied to another account's or provider's row fails
to open instead of serving the wrong account. Only `get_plaintext` opens one; the
masked form (`sk-…abcd`) is computed once, at `put`.

The calls are synchronous database work: the servicer runs them in a thread.
Keys never appear in logs or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, create_engine, select

_NONCE_BYTES = 12


class ProviderKeyRow(SQLModel, table=True):
    __tablename__ = "provider_keys"

    account_id: str = Field(primary_key=True, max_length=128)
    provider: str = Field(primary_key=True, max_length=64)
    # nonce (12 bytes) + AES-GCM ciphertext and tag
    sealed: bytes
    masked: str = Field(max_length=32)
    # Unix seconds
    updated_at: int


@dataclass(frozen=True)
class StoredKey:
    provider: str
    masked: str
    updated_at: int


class KeyDecryptionError(Exception):
    """A stored key does not open: the key-encryption key changed, or the row was
    moved to another account or provider."""


def parse_kek(value: str) -> bytes:
    """The 32-byte key-encryption key from its URL-safe base64 form (padding optional)."""
    try:
        kek = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("STEPBLEND_KEY_ENCRYPTION_KEY is not URL-safe base64") from exc
    if len(kek) != 32:
        raise ValueError(f"STEPBLEND_KEY_ENCRYPTION_KEY must decode to 32 bytes, not {len(kek)}")
    return kek


def new_kek() -> str:
    """A fresh key-encryption key in the form `parse_kek` reads."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def mask(api_key: str) -> str:
    """`sk-…abcd`: the first 3 and last 4 characters; a short key shows nothing."""
    if len(api_key) < 16:
        return "****"
    return f"{api_key[:3]}…{api_key[-4:]}"


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir}/providers.db"


def make_engine(url: str) -> Engine:
    """An engine for the vault's database; SQLite files get their folder created."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})
    return create_engine(url, pool_pre_ping=True)


class KeyVault:
    def __init__(self, engine: Engine, kek: bytes, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._aead = AESGCM(kek)
        self._clock = clock

    def create_tables(self) -> None:
        SQLModel.metadata.create_all(self._engine, tables=[ProviderKeyRow.__table__])  # type: ignore[attr-defined]

    def put(self, account_id: str, provider: str, api_key: str) -> StoredKey:
        """Store (or replace) the account's key for `provider`."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, api_key.encode(), _aad(account_id, provider))
        row = ProviderKeyRow(
            account_id=account_id,
            provider=provider,
            sealed=sealed,
            masked=mask(api_key),
            updated_at=int(self._clock()),
        )
        for attempt in range(2):
            try:
                with Session(self._engine) as session:
                    session.merge(row)
                    session.commit()
                break
            except IntegrityError:
                # Two puts raced to insert the same row; the second try updates it.
                if attempt:
                    raise
        return StoredKey(provider, row.masked, row.updated_at)

    def delete(self, account_id: str, provider: str) -> bool:
        with Session(self._engine) as session:
            row = session.get(ProviderKeyRow, (account_id, provider))
            if row is None:
                return False
            session.delete(row)
            session.commit()
            return True

    def list_keys(self, account_id: str) -> list[StoredKey]:
        with Session(self._engine) as session:
            rows = session.exec(
                select(ProviderKeyRow).where(ProviderKeyRow.account_id == account_id).order_by(ProviderKeyRow.provider)
            ).all()
            return [StoredKey(row.provider, row.masked, row.updated_at) for row in rows]

    def connected(self, account_id: str) -> list[str]:
        with Session(self._engine) as session:
            return list(
                session.exec(
                    select(ProviderKeyRow.provider)
                    .where(ProviderKeyRow.account_id == account_id)
                    .order_by(ProviderKeyRow.provider)
                ).all()
            )

    def get_plaintext(self, account_id: str, provider: str) -> str | None:
        """The key in clear, None when there is none; `KeyDecryptionError` when it does not open."""
        with Session(self._engine) as session:
            row = session.get(ProviderKeyRow, (account_id, provider))
            sealed = None if row is None else row.sealed
        if sealed is None:
            return None
        try:
            plain = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(account_id, provider))
        except InvalidTag:
            raise KeyDecryptionError(f"the stored {provider} key of account {account_id} does not decrypt") from None
        return plain.decode()


def _aad(account_id: str, provider: str) -> bytes:
    return f"{account_id}|{provider}".encode()
