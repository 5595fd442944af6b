"""`stepblend up --demo`: a mock provider as its own vendor, for one demo account.

The demo provider is the `demo` vendor (vendors.toml, operator-only), not a stand-in
for OpenAI: only the demo account is connected to it, so every other account's
OpenAI key still reaches OpenAI. The router learns the demo's models from a catalog
written into the data dir: the packaged catalog plus a copy of a few of its rows
with `provider = "demo"` (same ids, same prices), so `gpt-4o-mini`, `lowest-cost` and
the cost cap work in the demo as they would with real keys.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .datadir import token

DEMO_EMAIL = "demo@stepblend.local"
#: Packaged catalog rows the demo provider also serves: cheap and dear, four families,
#: each on the demo vendor speaking its family's wire format (the one mock answers all).
DEMO_MODELS = (
    ("gpt-4o-mini", "demo"),
    ("gpt-4o", "demo"),
    ("gpt-5-mini", "demo"),
    ("claude-haiku-4-5-20251001", "demo_anthropic"),
    ("claude-sonnet-4-5-20250929", "demo_anthropic"),
    ("gemini-2.5-flash", "demo_gemini"),
    ("llama-3.3-70b", "demo"),
)
#: The demo's vendors (services/providers/vendors.toml), each connected for the demo account.
DEMO_VENDORS = ("demo", "demo_anthropic", "demo_gemini")
_ROW_START = "[[models]]"
_PROVIDER_LINE = re.compile(r'^provider = "[^"]*"$', re.MULTILINE)


def demo_rows(catalog_text: str, models: tuple[tuple[str, str], ...] = DEMO_MODELS) -> str:
    """A copy of each of `models`' rows in `catalog_text` on its demo vendor, as TOML text.

    Works on the text, row by row (each starts at a `[[models]]` header), so the copy
    keeps every field of the original without a TOML writer. ValueError names a model
    the catalog does not have.
    """
    rows: dict[str, str] = {}
    for block in catalog_text.split(_ROW_START)[1:]:
        # A row ends where the next table starts (the last one before `[[embeddings]]`).
        block = re.split(r"^\[", block, maxsplit=1, flags=re.MULTILINE)[0]
        found = re.search(r'^id = "([^"]+)"$', block, re.MULTILINE)
        if found:
            # An id several hosts serve: the first host's row (llama-3.3-70b: Groq's).
            rows.setdefault(found.group(1), block)
    missing = [model for model, _vendor in models if model not in rows]
    if missing:
        raise ValueError(f"the catalog has no rows for the demo models {missing}")
    copies = [
        _ROW_START + _PROVIDER_LINE.sub(f'provider = "{vendor}"', rows[model], count=1) for model, vendor in models
    ]
    return "# The demo provider's copies (stepblend/demo.py).\n" + "".join(copies)


def write_demo_catalog(data_dir: Path, base: Path | None) -> Path:
    """The demo catalog in the data dir: the operator's STEPBLEND_CATALOG_FILE (`base`),
    if any, and the demo copies, taken from the packaged rows and the operator's. Like
    any catalog file it extends the packaged catalog (unless `base` says otherwise)."""
    from services.router.catalog import default_catalog_text

    operator = base.read_text("utf-8") if base else ""
    copies = demo_rows(default_catalog_text() + "\n" + operator)
    path = data_dir / "demo-catalog.toml"
    path.write_text(operator.rstrip() + "\n\n" + copies if operator.strip() else copies)
    return path


def demo_account(data_dir: Path) -> tuple[str, str]:
    """Create (or find) the demo account and connect the demo provider for it.

    Returns a fresh token and the account's console password (kept in the data dir,
    0600, since the account's first start; empty for an account an older version
    created without one).
    """
    import grpc

    from .control import Control

    control = Control.find(data_dir)
    password_file = data_dir / "demo_password"
    try:
        password = token(12)
        account_id = control.create_account(DEMO_EMAIL, "free", password)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        account_id = control.account_id(DEMO_EMAIL)
        password = password_file.read_text().strip() if password_file.exists() else ""
    # The mock checks no key; a random one keeps the vault's rules (and masks) real.
    for vendor in DEMO_VENDORS:
        control.set_key(account_id, vendor, "sk-demo-" + os.urandom(12).hex())
    return control.token(account_id), password
