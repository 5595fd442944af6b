from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from services.providers.vault import (
    KeyDecryptionError,
    KeyVault,
    make_engine,
    mask,
    new_kek,
    parse_kek,
)

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
    assert vault.get_plaintext("a1", "openai") == KEY
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
    assert vault.get_plaintext("a1", "openai") == KEY + "new9"
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
    assert vault.get_plaintext("victim", "openai") == KEY


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
