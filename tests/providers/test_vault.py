from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from services.providers.rotate import rotate
from services.providers.vault import (
    KeyCache,
    KeyDecryptionError,
    KeyVault,
    kek_id,
    make_engine,
    mask,
    new_kek,
    parse_kek,
    seal,
    unseal,
)
from tests.billing.pgcluster import PostgresCluster

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/sub/providers.db")
    yield engine
    engine.dispose()


@pytest.fixture
def vault(engine: Engine) -> KeyVault:
    vault = KeyVault(engine, parse_kek(new_kek()), clock=lambda: 1_700_000_000.0)
    vault.create_tables()
    return vault


def test_round_trip_list_connected_delete(vault: KeyVault) -> None:
    stored = vault.put("a1", "openai", KEY)
    assert stored.masked == "sk-…0123"
    assert stored.updated_at == 1_700_000_000
    assert _reveal(vault.get_plaintext("a1", "openai")) == KEY
    assert vault.get_plaintext("a1", "groq") is None
    assert vault.get_plaintext("a2", "openai") is None
    vault.put("a1", "groq", "gsk_" + "x" * 40)
    assert [k.provider for k in vault.list_keys("a1")] == ["groq", "openai"]
    assert vault.connected("a1") == ["groq", "openai"]
    assert vault.delete("a1", "openai") is True
    assert vault.delete("a1", "openai") is False
    assert vault.connected("a1") == ["groq"]


def test_put_replaces(vault: KeyVault) -> None:
    vault.put("a1", "openai", KEY)
    vault.put("a1", "openai", KEY + "new9")
    assert _reveal(vault.get_plaintext("a1", "openai")) == KEY + "new9"
    assert [k.masked for k in vault.list_keys("a1")] == ["sk-…new9"]


def test_stored_form_is_sealed_with_a_fresh_nonce(vault: KeyVault, engine: Engine) -> None:
    vault.put("a1", "openai", KEY)
    vault.put("a2", "openai", KEY)
    with engine.connect() as conn:
        sealed = [row[0] for row in conn.execute(text("SELECT sealed FROM provider_keys"))]
    assert len(sealed) == 2
    assert all(KEY.encode() not in blob for blob in sealed)
    assert sealed[0][:12] != sealed[1][:12]


def test_a_key_moved_to_another_account_or_provider_does_not_open(vault: KeyVault, engine: Engine) -> None:
    vault.put("victim", "openai", KEY)
    vault.put("attacker", "openai", "sk-attacker-000000000000000")
    vault.put("victim", "groq", "gsk_" + "y" * 40)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE provider_keys SET sealed = (SELECT sealed FROM provider_keys"
                " WHERE account_id = 'victim' AND provider = 'openai')"
                " WHERE (account_id = 'attacker' AND provider = 'openai') OR (account_id = 'victim' AND provider = 'groq')"
            )
        )
    with pytest.raises(KeyDecryptionError) as moved_account:
        vault.get_plaintext("attacker", "openai")
    with pytest.raises(KeyDecryptionError):
        vault.get_plaintext("victim", "groq")
    assert KEY not in str(moved_account.value)
    assert _reveal(vault.get_plaintext("victim", "openai")) == KEY


def test_wrong_key_encryption_key_fails(vault: KeyVault, engine: Engine) -> None:
    vault.put("a1", "openai", KEY)
    other = KeyVault(engine, parse_kek(new_kek()))
    with pytest.raises(KeyDecryptionError):
        other.get_plaintext("a1", "openai")


def test_mask() -> None:
    assert mask("sk-abcdefghijklmnopqrstu") == "sk-…rstu"
    assert mask("short-key") == "****"
    assert "…" in mask("gsk_" + "a" * 50)


def test_parse_kek() -> None:
    kek = new_kek()
    assert len(parse_kek(kek)) == 32
    assert parse_kek(kek.rstrip("=")) == parse_kek(kek)
    with pytest.raises(ValueError, match="32 bytes"):
        parse_kek("c2hvcnQ=")
    with pytest.raises(ValueError):
        parse_kek("!!!not base64!!!")


def test_each_row_names_the_key_that_sealed_it(vault: KeyVault, engine: Engine) -> None:
    vault.put("a1", "openai", KEY)
    with engine.connect() as conn:
        [stored_id] = conn.execute(text("SELECT kek_id FROM provider_keys")).scalars()
    assert len(stored_id) == 16 and stored_id == kek_id(vault._kek)
    assert stored_id not in new_kek()


def test_previous_keys_keep_opening_rows_not_yet_rotated(engine: Engine) -> None:
    old, new = parse_kek(new_kek()), parse_kek(new_kek())
    before = KeyVault(engine, old)
    before.create_tables()
    before.put("a1", "openai", KEY)
    during = KeyVault(engine, new, previous=[old])
    assert _reveal(during.get_plaintext("a1", "openai")) == KEY
    during.put("a2", "openai", KEY + "2")
    # Without the previous key the old row no longer opens; the new one does.
    after = KeyVault(engine, new)
    with pytest.raises(KeyDecryptionError):
        after.get_plaintext("a1", "openai")
    assert _reveal(after.get_plaintext("a2", "openai")) == KEY + "2"


def test_a_table_from_before_key_ids_is_migrated_and_its_rows_open(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    kek = parse_kek(new_kek())
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE provider_keys (account_id VARCHAR(128) NOT NULL, provider VARCHAR(64) NOT NULL,"
                " sealed BLOB NOT NULL, masked VARCHAR(32) NOT NULL, updated_at INTEGER NOT NULL,"
                " PRIMARY KEY (account_id, provider))"
            )
        )
        conn.execute(
            text("INSERT INTO provider_keys VALUES ('a1', 'openai', :sealed, 'sk-…0123', 1)"),
            {"sealed": seal(kek, "a1", "openai", KEY)},
        )
    vault = KeyVault(engine, parse_kek(new_kek()), previous=[kek])
    vault.create_tables()
    vault.create_tables()  # idempotent
    assert _reveal(vault.get_plaintext("a1", "openai")) == KEY
    engine.dispose()


async def test_key_cache_serves_from_memory_until_a_change_drops_it(vault: KeyVault) -> None:
    cache = KeyCache(vault)
    assert await cache.plaintext("a1", "openai") is None
    vault.put("a1", "openai", KEY)
    assert await cache.plaintext("a1", "openai") is None  # the absence was cached
    cache.drop("a1", "openai")
    assert _reveal(await cache.plaintext("a1", "openai")) == KEY
    vault.put("a1", "openai", KEY + "2")
    cache.drop("a1", "openai")
    assert _reveal(await cache.plaintext("a1", "openai")) == KEY + "2"


async def test_a_key_dropped_while_its_read_is_in_flight_is_not_put_back(
    vault: KeyVault, engine: Engine, tmp_path: Path
) -> None:
    vault.put("a1", "openai", KEY)
    cache = KeyCache(vault)
    # Another connection holds the database's lock: the cache's read waits on it.
    blocker = sqlite3.connect(tmp_path / "sub" / "providers.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    reading = asyncio.ensure_future(cache.plaintext("a1", "openai"))
    await asyncio.sleep(0.2)  # the read is in its thread, waiting on the lock
    assert not reading.done()
    cache.drop("a1", "openai")  # a keys.v1.changed arrives meanwhile
    blocker.execute("ROLLBACK")
    blocker.close()
    assert _reveal(await reading) == KEY  # asked before the change: what was there
    vault.put("a1", "openai", KEY + "2")
    # The read that raced the drop was not kept: the next one reads the new key.
    assert _reveal(await cache.plaintext("a1", "openai")) == KEY + "2"


def _reveal(key: SecretStr | None) -> str | None:
    return None if key is None else key.get_secret_value()


async def test_a_key_from_the_cache_never_shows_itself(vault: KeyVault, caplog: pytest.LogCaptureFixture) -> None:
    vault.put("a1", "openai", KEY)
    key = await KeyCache(vault).plaintext("a1", "openai")
    assert key is not None and key.get_secret_value() == KEY
    logging.getLogger("test").warning("key %s %r", key, key)
    shown = " ".join([repr(key), str(key), f"{key}", caplog.text])
    assert KEY not in shown and KEY[-6:] not in shown


async def test_a_key_opened_by_the_vault_never_shows_itself(
    vault: KeyVault, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Every way the vault hands a key out is a SecretStr from the moment it is opened.
    vault.put("a1", "openai", KEY)
    kek = parse_kek(new_kek())
    opened = [
        vault.get_plaintext("a1", "openai"),
        await vault.plaintext("a1", "openai"),
        unseal(kek, "a1", "openai", seal(kek, "a1", "openai", KEY)),
    ]
    caplog.set_level(logging.DEBUG)
    for key in opened:
        assert isinstance(key, SecretStr) and key.get_secret_value() == KEY
        logging.getLogger("test").debug("key %s %r", key, key)
        logging.getLogger("test").debug("in a structure: %s", {"api_key": key, "keys": [key]})
        try:
            raise RuntimeError(key)
        except RuntimeError:
            logging.getLogger("test").exception("failed with %s", key)
        shown = " ".join([repr(key), str(key), f"{key}", f"{key!r}", caplog.text])
        assert KEY not in shown and KEY[-6:] not in shown


def test_the_vault_on_postgresql_stores_replaces_lists_rotates_and_deletes(pg_cluster: PostgresCluster) -> None:
    # The vault of a deployment that sets providers' STEPBLEND_DATABASE_URL to PostgreSQL.
    postgres_url = pg_cluster.url(pg_cluster.create_database())
    engine = make_engine(postgres_url)
    try:
        old = parse_kek(new_kek())
        vault = KeyVault(engine, old, clock=lambda: 1_700_000_000.0)
        vault.create_tables()
        vault.create_tables()  # a second replica starting: nothing to do
        vault.put("a1", "openai", KEY)
        replaced = vault.put("a1", "openai", KEY + "new9", masked="sk-…new9", shown='{"region": "x"}')
        vault.put("a1", "groq", "gsk_" + "x" * 40)
        assert [(k.provider, k.masked, k.shown) for k in vault.list_keys("a1")] == [
            ("groq", "gsk…xxxx", ""),
            ("openai", "sk-…new9", '{"region": "x"}'),
        ]
        assert replaced.masked == "sk-…new9"
        assert _reveal(vault.get_plaintext("a1", "openai")) == KEY + "new9"

        new = new_kek()
        assert rotate(postgres_url, [base64.urlsafe_b64encode(old).decode()], new) == 2
        assert _reveal(KeyVault(engine, parse_kek(new)).get_plaintext("a1", "openai")) == KEY + "new9"
        with pytest.raises(KeyDecryptionError):
            vault.get_plaintext("a1", "openai")

        assert vault.delete("a1", "openai") is True
        assert vault.delete("a1", "openai") is False
        assert vault.connected("a1") == ["groq"]
    finally:
        engine.dispose()
