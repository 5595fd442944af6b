"""NATS least privilege for `stepblend up`: a user per service, each with a generated
password and only the subjects its job needs, so that no service can forge another's
events — only the gateway publishes usage (what billing bills), only providers key
changes, only billing account changes and dead letters.

Every service also needs JetStream's API (`$JS.API.>`, to declare streams and read
its consumers), acks (`$JS.ACK.>`) and replies (`_INBOX.>`), but not JetStream's
calls that delete (`DENIED`): no service can delete or purge a stream, delete a
stored event, or restore a stream over it. Every service still updates the streams'
configuration at start (events.ensure_streams), so one could shrink a stream's
limits: narrowing that, and the rest of the API to each one's own streams and
consumers, is a further step. The `operator` user (the data
dir's owner: the CLI, tests, an operator's `nats` tool) has every permission.

The passwords live in the data dir (0600), so restarts agree; the config holds only
the `authorization` block: `stepblend up` passes the listen address and JetStream on
nats-server's command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from .datadir import token

SERVICES = ("gateway", "router", "providers", "billing")
OPERATOR = "operator"
# services.common.events' subjects, spelled out: `stepblend up` stays free of the
# services' imports (tests/security checks the two agree).
USAGE, KEYS, ACCOUNTS, DEAD_LETTERS = "usage.v1.>", "keys.v1.changed", "accounts.v1.changed", "deadletter.>"
_COMMON = ["$JS.API.>", "$JS.ACK.>", "_INBOX.>"]
_EVENTS = [USAGE, KEYS, ACCOUNTS]
#: JetStream calls that delete stored events: the operator's alone.
DENIED = [
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.STREAM.SNAPSHOT.>",
    "$JS.API.STREAM.RESTORE.>",
]
#: The subjects each service may publish to, beyond the common ones.
PUBLISHES: dict[str, list[str]] = {
    "gateway": [USAGE],
    "router": [],
    "providers": [KEYS],
    "billing": [ACCOUNTS, DEAD_LETTERS],
}
PASSWORDS_FILE = "nats_passwords.json"
CONFIG_FILE = "nats.conf"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def passwords(data_dir: Path) -> dict[str, str]:
    """Each user's password, created once and kept in the data dir."""
    path = data_dir / PASSWORDS_FILE
    users = (*SERVICES, OPERATOR)
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        if set(stored) == set(users):
            return stored
    created = {name: token(24) for name in users}
    _write_private(path, json.dumps(created) + "\n")
    return created


def authorization(users: dict[str, str]) -> str:
    """The nats-server config's `authorization` block for `users`."""
    entries = [json.dumps({"user": OPERATOR, "password": users[OPERATOR]})]
    for name in SERVICES:
        permissions = {
            "publish": {"allow": PUBLISHES[name] + _COMMON, "deny": DENIED},
            "subscribe": {"allow": [*_EVENTS, "_INBOX.>"]},
        }
        entries.append(json.dumps({"user": name, "password": users[name], "permissions": permissions}))
    return "authorization {\n  users: [\n    " + ",\n    ".join(entries) + "\n  ]\n}\n"


def write_config(data_dir: Path) -> tuple[Path, dict[str, str]]:
    """The config file (0600) in the data dir, and every user's password."""
    users = passwords(data_dir)
    path = data_dir / CONFIG_FILE
    _write_private(path, authorization(users))
    return path, users


def url_for(address: str, name: str, users: dict[str, str]) -> str:
    """`nats://HOST:PORT` with user `name`'s credentials."""
    host_port = address.removeprefix("nats://")
    return f"nats://{name}:{quote(users[name], safe='')}@{host_port}"
