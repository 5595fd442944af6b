"""Rotation of the key-encryption key: every stored key re-encrypted, in one
transaction, idempotently; the command line reads keys from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from services.providers.rotate import RotationError, main, rotate
from services.providers.vault import (
    KeyDecryptionError,
    KeyVault,
    make_engine,
    new_kek,
    parse_kek,
)

KEYS = {
    ("a1", "openai"): "sk-proj-aaaaaaaaaaaaaaaaaaaa1111",
    ("a1", "anthropic"): "sk-ant-bbbbbbbbbbbbbbbbbbbb2222",
    ("a2", "groq"): "gsk_cccccccccccccccccccc3333",
}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/providers.db"


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    yield engine
    engine.dispose()


def fill(engine: Engine, kek: str) -> None:
    vault = KeyVault(engine, parse_kek(kek))
    vault.create_tables()
    for (account, provider), key in KEYS.items():
        vault.put(account, provider, key)


def sealed_rows(engine: Engine) -> list[tuple[bytes, str]]:
    with engine.connect() as conn:
        return [(row[0], row[1]) for row in conn.execute(text("SELECT sealed, kek_id FROM provider_keys ORDER BY 1"))]


def test_rotation_re_encrypts_every_key_once(engine: Engine, url: str) -> None:
    old, new = new_kek(), new_kek()
    fill(engine, old)
    before = sealed_rows(engine)
    assert rotate(url, old, new) == 3
    after = sealed_rows(engine)
    assert {blob for blob, _ in before}.isdisjoint(blob for blob, _ in after)
    assert len({kek for _, kek in after}) == 1
    vault = KeyVault(engine, parse_kek(new))
    for (account, provider), key in KEYS.items():
        assert _reveal(vault.get_plaintext(account, provider)) == key
    with pytest.raises(KeyDecryptionError):
        KeyVault(engine, parse_kek(old)).get_plaintext("a1", "openai")
    # Idempotent: everything is under the new key now.
    assert rotate(url, old, new) == 0
    assert sealed_rows(engine) == after


def test_rotation_resumes_where_keys_were_written_under_the_new_key(engine: Engine, url: str) -> None:
    old, new = new_kek(), new_kek()
    fill(engine, old)
    # The service already runs with the new key (and the old as previous) and replaced one key.
    KeyVault(engine, parse_kek(new), previous=[parse_kek(old)]).put("a1", "openai", "sk-proj-replaced000000000000")
    assert rotate(url, [old], new) == 2
    assert _reveal(KeyVault(engine, parse_kek(new)).get_plaintext("a1", "openai")) == "sk-proj-replaced000000000000"


def test_a_key_that_does_not_open_changes_nothing(engine: Engine, url: str) -> None:
    old, new = new_kek(), new_kek()
    fill(engine, old)
    before = sealed_rows(engine)
    with pytest.raises(RotationError) as failed:
        rotate(url, new_kek(), new)
    assert "nothing was changed" in str(failed.value)
    assert sealed_rows(engine) == before
    assert all(key not in str(failed.value) for key in KEYS.values())


def test_rows_from_before_key_ids_are_rotated(engine: Engine, url: str) -> None:
    old, new = new_kek(), new_kek()
    fill(engine, old)
    with engine.begin() as conn:
        conn.execute(text("UPDATE provider_keys SET kek_id = ''"))
    assert rotate(url, old, new) == 3
    assert _reveal(KeyVault(engine, parse_kek(new)).get_plaintext("a2", "groq")) == KEYS[("a2", "groq")]


def test_command_line_reads_keys_from_the_environment(
    engine: Engine, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = new_kek(), new_kek()
    fill(engine, old)
    monkeypatch.setenv("STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS", old)
    monkeypatch.setenv("STEPBLEND_KEY_ENCRYPTION_KEY", new)
    assert main(["--database-url", url]) == 0
    assert capsys.readouterr().out == "3\n"
    assert main(["--database-url", url]) == 0
    assert capsys.readouterr().out == "0\n"


def test_command_line_from_key_files_and_a_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    engine = make_engine(f"sqlite:///{data_dir}/providers.db")
    old, new = new_kek(), new_kek()
    fill(engine, old)
    engine.dispose()
    (tmp_path / "old").write_text(old + "\n")
    (tmp_path / "new").write_text(new + "\n")
    monkeypatch.delenv("STEPBLEND_DATABASE_URL", raising=False)
    argv = [
        "--data-dir",
        str(data_dir),
        "--old-kek-file",
        str(tmp_path / "old"),
        "--new-kek-file",
        str(tmp_path / "new"),
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out == "3\n"
    (tmp_path / "new").write_text(new_kek())
    assert (
        main(
            [
                "--data-dir",
                str(data_dir),
                "--old-kek-file",
                str(tmp_path / "old"),
                "--new-kek-file",
                str(tmp_path / "new"),
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert captured.out == "" and "opens with none" in captured.err


def test_command_line_needs_both_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS", raising=False)
    monkeypatch.setenv("STEPBLEND_KEY_ENCRYPTION_KEY", new_kek())
    with pytest.raises(SystemExit) as exited:
        main(["--database-url", "sqlite://"])
    assert exited.value.code == 2


def _reveal(key: SecretStr | None) -> str | None:
    return None if key is None else key.get_secret_value()
