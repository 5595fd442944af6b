"""Rotation of the key-encryption key: re-encrypt every stored provider key.

    python -m services.providers.rotate [--database-url URL | --data-dir DIR]
                                        [--old-kek-file F] [--new-kek-file F]

The old key is read from `--old-kek-file` or `STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS`
(comma-separated when several), the new one from `--new-kek-file` or
`STEPBLEND_KEY_ENCRYPTION_KEY` — never from the command line, where `ps` shows it.
Prints the number of keys re-encrypted, and nothing else.

The procedure, without downtime:
1. restart the providers service with the new key as STEPBLEND_KEY_ENCRYPTION_KEY
   and the old one as STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS (it then reads rows under
   either and writes new ones under the new key);
2. run this (same two variables): every row under an old key is re-encrypted under
   the new one, in one transaction — all or none;
3. restart without STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS.

It is idempotent and resumable: a row already under the new key (its stored key id
says so) is skipped, so running it again, or after an interruption, re-encrypts only
what is left. A row no given key opens stops it, naming the row, with nothing changed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from pydantic import SecretStr
from sqlalchemy import Row, select, update

from services.providers.vault import (
    PROVIDER_KEYS,
    create_tables,
    default_database_url,
    kek_id,
    make_engine,
    parse_kek,
    parse_keks,
    seal,
    unseal,
)

Kek = str | bytes


class RotationError(Exception):
    """A stored key that no given key-encryption key opens; nothing was changed."""


def rotate(database_url: str, old_kek: Kek | Sequence[Kek], new_kek: Kek) -> int:
    """Re-encrypt every stored key sealed under `old_kek` (one key or several, base64
    or raw bytes) under `new_kek`, in one transaction. Returns how many were."""
    olds = [_kek(k) for k in ([old_kek] if isinstance(old_kek, str | bytes) else old_kek)]
    new = _kek(new_kek)
    new_id = kek_id(new)
    by_id = {kek_id(k): k for k in olds}
    engine = make_engine(database_url)
    try:
        create_tables(engine)
        rotated = 0
        keys = PROVIDER_KEYS.c
        with engine.begin() as connection:
            rows = connection.execute(
                select(keys.account_id, keys.provider, keys.sealed, keys.kek_id).with_for_update()
            ).all()
            for row in rows:
                if row.kek_id == new_id:
                    continue
                plain, sealed_by = _open(row, by_id, new)
                values: dict[str, object] = {"kek_id": new_id}
                if sealed_by != new_id:
                    values["sealed"] = seal(new, row.account_id, row.provider, plain.get_secret_value())
                    rotated += 1
                # else: an unlabelled row the new key already opens: only its label was missing.
                this = (keys.account_id == row.account_id) & (keys.provider == row.provider)
                connection.execute(update(PROVIDER_KEYS).where(this).values(values))
        return rotated
    finally:
        engine.dispose()


def _open(row: Row[Any, Any, Any, Any], olds: dict[str, bytes], new: bytes) -> tuple[SecretStr, str]:
    """The row's key (revealed only to seal it again) and the id of the key that opened it."""
    if row.kek_id:
        tries = [(row.kek_id, olds[row.kek_id])] if row.kek_id in olds else []
    else:
        tries = [*olds.items(), (kek_id(new), new)]
    for sealed_by, kek in tries:
        try:
            return unseal(kek, row.account_id, row.provider, row.sealed), sealed_by
        except InvalidTag:
            continue
    raise RotationError(
        f"the stored {row.provider} key of account {row.account_id} opens with none of the given keys"
        " (is the old key the one that sealed it?); nothing was changed"
    )


def _kek(value: Kek) -> bytes:
    if isinstance(value, bytes):
        if len(value) != 32:
            raise ValueError("a key-encryption key is 32 bytes")
        return value
    return parse_kek(value)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="stepblend keys rotate", description="Re-encrypt every stored provider key under a new key-encryption key."
    )
    parser.add_argument("--database-url", help="the providers service's database (default: STEPBLEND_DATABASE_URL)")
    parser.add_argument(
        "--data-dir", type=Path, help="the data dir whose providers.db to use (default: STEPBLEND_DATA_DIR)"
    )
    parser.add_argument(
        "--old-kek-file", type=Path, help="a file holding the old key (default: STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS)"
    )
    parser.add_argument(
        "--new-kek-file", type=Path, help="a file holding the new key (default: STEPBLEND_KEY_ENCRYPTION_KEY)"
    )
    args = parser.parse_args(argv)
    env = os.environ
    old = args.old_kek_file.read_text() if args.old_kek_file else env.get("STEPBLEND_KEY_ENCRYPTION_KEY_PREVIOUS", "")
    new = args.new_kek_file.read_text() if args.new_kek_file else env.get("STEPBLEND_KEY_ENCRYPTION_KEY", "")
    if not old.strip() or not new.strip():
        parser.error("both the old and the new key-encryption key are needed (see --help)")
    if args.database_url:
        url = args.database_url
    elif args.data_dir is None and env.get("STEPBLEND_DATABASE_URL"):
        url = env["STEPBLEND_DATABASE_URL"]
    else:
        url = default_database_url(args.data_dir or Path(env.get("STEPBLEND_DATA_DIR", ".stepblend")))
    try:
        rotated = rotate(url, parse_keks(old), new.strip())
    except (RotationError, ValueError) as exc:
        print(f"stepblend keys rotate: {exc}", file=sys.stderr)
        return 1
    print(rotated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
