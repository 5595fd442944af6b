"""Local mode keeps its files private, and a key can be set without showing it.

`stepblend up`'s data dir holds the JWT secret, the key-encryption key, the
internal token and both databases: the dir is its owner's only (0700) and each of
those files 0600. `stepblend keys set EMAIL PROVIDER -` reads the key from standard
input, so it never appears in `ps` or the shell's history; `keys list` and
`keys delete` complete the set.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import uuid

from tests.support.system import System

PRIVATE_FILES = ("jwt_secret", "key_encryption_key", "internal_token", "billing.db", "providers.db", "services.json")


def test_the_data_dir_and_its_secrets_are_owner_only(system: System) -> None:
    assert stat.S_IMODE(system.data_dir.stat().st_mode) == 0o700
    modes = {name: stat.S_IMODE((system.data_dir / name).stat().st_mode) for name in PRIVATE_FILES}
    assert modes == dict.fromkeys(PRIVATE_FILES, 0o600)


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


def test_keys_set_from_stdin_then_list_and_delete(system: System) -> None:
    email = f"stdin-{uuid.uuid4().hex[:8]}@example.com"
    system.cli("account", "create", email)
    key = f"sk-from-stdin-{uuid.uuid4().hex}"
    set_ = _cli(system, "keys", "set", email, "openai", "-", stdin=key + "\n")
    assert set_.returncode == 0, set_.stderr
    assert key not in set_.stdout and set_.stdout.strip().endswith(key[-4:])

    listed = _cli(system, "keys", "list", email)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == f"openai\t{set_.stdout.strip()}"

    deleted = _cli(system, "keys", "delete", email, "openai")
    assert deleted.returncode == 0, deleted.stderr
    assert _cli(system, "keys", "list", email).stdout.strip() == ""
    again = _cli(system, "keys", "delete", email, "openai")
    assert again.returncode == 1 and "no openai key is connected" in again.stderr

    empty = _cli(system, "keys", "set", email, "openai", "-", stdin="")
    assert empty.returncode == 1 and "no key given" in empty.stderr
