"""The key vault: the account's provider keys, encrypted at rest.

Each key is sealed with AES-GCM under the key-encryption key
(`STEPBLEND_KEY_ENCRYPTION_KEY`, 32 bytes URL-safe base64) with a fresh random
12-byte nonce stored before the ciphertext, and with `account_id|provider` as
associated data: a sealed key copied to another account's or provider's row fails
to open instead of serving the wrong account. Only `open` opens one, and what it
returns is a `SecretStr` (its repr, str and any log line show `**********`), revealed
only where a request's headers are built and a provider's text is scrubbed of it;
the masked form (`sk-…abcd`) is computed once, at `put`. A key of several fields
(Azure's, see `credentials`) is sealed as one JSON object; beside it, `shown` keeps
what listing it shows (secret fields masked, the endpoint and deployments as they are).

Each row also stores the id of the key-encryption key that sealed it (`kek_id`, a
keyed hash of it: it says nothing about the key). That lets the encryption key be
rotated without downtime: run the service with the new key as
`STEPBLEND_KEY_ENCRYPTION_KEY` and the old one in
`STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS` (it reads rows sealed under either and
writes under the new one), re-encrypt every row (`rotate`), then drop the previous
key. Rows from before ids were stored have an empty id and are tried with each key.

The calls are synchronous database work: the servicer runs them in a thread.
Keys never appear in logs or exception messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from services.common.cache import TtlCache
from services.common.sql import conflict_insert

_NONCE_BYTES = 12
_KEK_ID_LABEL = b"stepblend.v1 key-encryption-key id"


# SQLAlchemy Core, not an ORM: the vault is five statements, and the ORM's
# modules would cost providers about 6 MB of memory for nothing.
PROVIDER_KEYS = Table(
    "provider_keys",
    MetaData(),
    Column("account_id", String(128), primary_key=True),
    Column("provider", String(64), primary_key=True),
    # nonce (12 bytes) + AES-GCM ciphertext and tag
    Column("sealed", LargeBinary, nullable=False),
    Column("masked", String(32), nullable=False),
    # Unix seconds
    Column("updated_at", Integer, nullable=False),
    # kek_id() of the key-encryption key that sealed it; "" for rows older than ids
    Column("kek_id", String(32), nullable=False, default=""),
    # A multi-field key as listing shows it (JSON, secrets masked); "" for a plain key.
    Column("shown", Text, nullable=False, default=""),
)
_k = PROVIDER_KEYS.c
_ROW = (_k.account_id == bindparam("account_id")) & (_k.provider == bindparam("provider"))


@dataclass(frozen=True)
class StoredKey:
    provider: str
    masked: str
    updated_at: int
    shown: str = ""


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


def parse_keks(value: str) -> list[bytes]:
    """A comma-separated list of keys (STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS)."""
    return [parse_kek(part) for part in value.split(",") if part.strip()]


def new_kek() -> str:
    """A fresh key-encryption key in the form `parse_kek` reads."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def kek_id(kek: bytes) -> str:
    """The id stored with each row sealed under `kek`: a keyed hash, not the key."""
    return hmac.new(kek, _KEK_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def mask(api_key: str) -> str:
    """`sk-…abcd`: the first 3 and last 4 characters; a short key shows nothing."""
    if len(api_key) < 16:
        return "****"
    return f"{api_key[:3]}…{api_key[-4:]}"


def seal(kek: bytes, account_id: str, provider: str, api_key: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, api_key.encode(), _aad(account_id, provider))


def unseal(kek: bytes, account_id: str, provider: str, sealed: bytes) -> SecretStr:
    """The key, opened, as a `SecretStr`; `InvalidTag` when `kek` did not seal it for this row."""
    return SecretStr(
        AESGCM(kek).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(account_id, provider)).decode()
    )


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir}/providers.db"


def make_engine(url: str) -> Engine:
    """An engine for the vault's database; SQLite files get their folder created."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created owner-only; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        return create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})
    return create_engine(url, pool_pre_ping=True)


_ADDED_COLUMNS = {"kek_id": "VARCHAR(32) NOT NULL DEFAULT ''", "shown": "TEXT NOT NULL DEFAULT ''"}


def create_tables(engine: Engine) -> None:
    """The vault's table, and the columns added since (`kek_id`, `shown`) on a table made before them."""
    PROVIDER_KEYS.create(engine, checkfirst=True)
    for column, definition in _ADDED_COLUMNS.items():
        if _has_column(engine, column):
            continue
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE provider_keys ADD COLUMN {column} {definition}"))
        except DBAPIError:
            # Another replica starting at the same moment may have added it first.
            if not _has_column(engine, column):
                raise


def _has_column(engine: Engine, name: str) -> bool:
    return name in {column["name"] for column in inspect(engine).get_columns("provider_keys")}


class KeyVault:
    def __init__(
        self,
        engine: Engine,
        kek: bytes,
        clock: Callable[[], float] = time.time,
        *,
        previous: Sequence[bytes] = (),
    ) -> None:
        self._engine = engine
        self._kek = kek
        self._kek_id = kek_id(kek)
        # Every key that may have sealed a row, by id; the current one first.
        self._keks = {kek_id(k): k for k in (kek, *previous)}
        self._clock = clock

    def create_tables(self) -> None:
        create_tables(self._engine)

    def put(
        self, account_id: str, provider: str, api_key: str, *, masked: str | None = None, shown: str = ""
    ) -> StoredKey:
        """Store (or replace) the account's key for `provider`, under the current key;
        a multi-field key comes with its `masked` key and `shown` view."""
        stored = StoredKey(provider, mask(api_key) if masked is None else masked, int(self._clock()), shown)
        row = {
            "account_id": account_id,
            "provider": provider,
            "sealed": seal(self._kek, account_id, provider, api_key),
            "masked": stored.masked,
            "updated_at": stored.updated_at,
            "kek_id": self._kek_id,
            "shown": shown,
        }
        with self._engine.begin() as connection:
            connection.execute(_upsert(connection.dialect.name, row))
        return stored

    def delete(self, account_id: str, provider: str) -> bool:
        with self._engine.begin() as connection:
            done = connection.execute(delete(PROVIDER_KEYS).where(_ROW), _key(account_id, provider))
            return bool(done.rowcount)

    def list_keys(self, account_id: str) -> list[StoredKey]:
        """The account's keys, masked, by provider."""
        query = (
            select(_k.provider, _k.masked, _k.updated_at, _k.shown)
            .where(_k.account_id == account_id)
            .order_by(_k.provider)
        )
        with self._engine.connect() as connection:
            return [StoredKey(*row) for row in connection.execute(query)]

    def connected(self, account_id: str) -> list[str]:
        query = select(_k.provider).where(_k.account_id == account_id).order_by(_k.provider)
        with self._engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def sealed(self, account_id: str, provider: str) -> Sealed | None:
        """The stored row's ciphertext and the id of the key that sealed it (a database read)."""
        with self._engine.connect() as connection:
            row = connection.execute(select(_k.sealed, _k.kek_id).where(_ROW), _key(account_id, provider)).first()
        return None if row is None else Sealed(bytes(row[0]), row[1])

    def open(self, account_id: str, provider: str, found: Sealed) -> SecretStr:
        """Decrypt a sealed key (a `SecretStr`); `KeyDecryptionError` when no key this vault has opens it."""
        if found.kek_id:
            # Sealed under a key this vault no longer has: nothing to try.
            candidates = [self._keks[found.kek_id]] if found.kek_id in self._keks else []
        else:
            # A row from before ids: try each key, the current one first.
            candidates = list(self._keks.values())
        for kek in candidates:
            try:
                return unseal(kek, account_id, provider, found.ciphertext)
            except InvalidTag:
                continue
        raise KeyDecryptionError(f"the stored {provider} key of account {account_id} does not decrypt")

    def get_plaintext(self, account_id: str, provider: str) -> SecretStr | None:
        """The key (a `SecretStr`), None when there is none; `KeyDecryptionError` when it does not open."""
        found = self.sealed(account_id, provider)
        return None if found is None else self.open(account_id, provider, found)

    async def plaintext(self, account_id: str, provider: str) -> SecretStr | None:
        return await asyncio.to_thread(self.get_plaintext, account_id, provider)


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes
    kek_id: str | None


class KeySource(Protocol):
    """Where an account's provider keys come from (the vault's cache): a key is a
    `SecretStr`, whose repr and str never show it; it is revealed only where a
    request's headers are built and where a provider's text is scrubbed of it."""

    async def plaintext(self, account_id: str, provider: str) -> SecretStr | None: ...


class KeyCache:
    """Sealed keys kept in memory for the request path, so that a request costs no
    database read and no thread hop: only an AES-GCM open (microseconds).

    Ciphertext is cached, never plaintext. Entries (absent keys too) live for a
    short TTL and are dropped at once by a Put or Delete here and by the
    `keys.v1.changed` event every replica receives. The cache is the shared
    `TtlCache`: concurrent misses share one database read, and a key dropped while
    its read was in flight is never put back by that read.
    """

    def __init__(self, vault: KeyVault, ttl_s: float = 30.0, max_entries: int = 100_000) -> None:
        self._vault = vault
        self._cache: TtlCache[tuple[str, str], Sealed | None] = TtlCache(self._load, ttl_s, max_entries=max_entries)

    async def _load(self, key: tuple[str, str]) -> Sealed | None:
        return await asyncio.to_thread(self._vault.sealed, *key)

    async def plaintext(self, account_id: str, provider: str) -> SecretStr | None:
        """The key, as a `SecretStr` (its repr and str never show it), or None."""
        found = await self._cache.get((account_id, provider))
        return None if found is None else self._vault.open(account_id, provider, found)

    def drop(self, account_id: str, provider: str) -> None:
        self._cache.drop((account_id, provider))


def _key(account_id: str, provider: str) -> dict[str, str]:
    return {"account_id": account_id, "provider": provider}


def _upsert(dialect: str, row: dict[str, object]) -> Any:
    """Insert `row`, or replace the stored one of its account and provider."""
    statement = conflict_insert(dialect, "the key vault")(PROVIDER_KEYS).values(row)
    changed = {name: statement.excluded[name] for name in row if name not in ("account_id", "provider")}
    return statement.on_conflict_do_update(index_elements=[_k.account_id, _k.provider], set_=changed)


def _aad(account_id: str, provider: str) -> bytes:
    return f"{account_id}|{provider}".encode()
