"""API keys (SPEC.md §7): creating one, listing an account's with this month's
requests and spend, revoking one, and finding one by its digest.

Billing never sees a key: the gateway makes it, keeps the pepper, and sends the
keyed hash (`digest`) and a hint to show. Limits are checked here once, at
creation; admission enforces them (admission.py). Errors are the account
module's (`InvalidAccountRequest`, `AccountNotFound`), so the servicer maps them
the same way.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import Session, col, select

from services.billing import counters, leases
from services.billing.accounts import AccountNotFound, InvalidAccountRequest, parse_budget
from services.billing.models import Account, ApiKey
from services.billing.months import as_utc, month_key

__all__ = ["KeyLimits", "KeyView", "create_key", "find_key", "list_keys", "revoke_key"]

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME = 100
MAX_KEYS = 100  # live keys per account
MAX_MODELS = 50
MAX_MODEL_NAME = 128


@dataclass(frozen=True)
class KeyLimits:
    """A key's limits as the caller gave them; None (or empty) is no limit."""

    expires_at: datetime | None = None
    monthly_request_limit: int | None = None
    monthly_budget_usd: Decimal | None = None
    rpm: int | None = None
    allowed_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyView:
    """A key as its account sees it: never its digest."""

    key_id: str
    account_id: str
    name: str
    hint: str
    created_at: datetime
    limits: KeyLimits
    last_used_at: datetime | None
    revoked: bool
    requests_this_month: int
    spend_this_month_usd: Decimal


def limits_from(
    *, expires_at: int, monthly_request_limit: int, monthly_budget_usd: str, rpm: int, allowed_models: list[str]
) -> KeyLimits:
    """The limits from their wire form (0 / "" / []: none); InvalidAccountRequest for bad ones."""
    models = tuple(dict.fromkeys(m.strip() for m in allowed_models if m.strip()))
    if len(models) > MAX_MODELS or any(len(m) > MAX_MODEL_NAME for m in models):
        raise InvalidAccountRequest(
            f"allowed_models: at most {MAX_MODELS} names of at most {MAX_MODEL_NAME} characters"
        )
    if expires_at < 0 or monthly_request_limit < 0 or rpm < 0:
        raise InvalidAccountRequest("limits must not be negative")
    return KeyLimits(
        expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at else None,
        monthly_request_limit=monthly_request_limit or None,
        monthly_budget_usd=parse_budget(monthly_budget_usd),
        rpm=rpm or None,
        allowed_models=models,
    )


def create_key(
    session: Session, *, account_id: str, name: str, digest: str, hint: str, limits: KeyLimits, now: datetime
) -> KeyView:
    """Store a new key of `account_id` and commit."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidAccountRequest(f"name: 1 to {MAX_NAME} characters")
    if not _DIGEST.match(digest) or not hint.startswith("sb-") or len(hint) > 16:
        raise InvalidAccountRequest("a key digest and hint from the gateway are required")
    if limits.expires_at is not None and limits.expires_at <= now:
        raise InvalidAccountRequest("expires_at must be in the future")
    if session.get(Account, account_id) is None:
        raise AccountNotFound(f"no account {account_id!r}")
    live = session.exec(
        select(ApiKey.key_id).where(col(ApiKey.account_id) == account_id, col(ApiKey.revoked_at).is_(None))
    ).all()
    if len(live) >= MAX_KEYS:
        raise InvalidAccountRequest(f"an account may have at most {MAX_KEYS} keys; revoke one first")
    key = ApiKey(
        key_id="key_" + uuid.uuid4().hex,
        account_id=account_id,
        name=name,
        digest=digest,
        hint=hint,
        created_at=now,
        expires_at=limits.expires_at,
        monthly_request_limit=limits.monthly_request_limit,
        monthly_budget_usd=limits.monthly_budget_usd,
        rpm=limits.rpm,
        allowed_models=",".join(limits.allowed_models),
    )
    session.add(key)
    session.commit()
    return _view(session, key, month_key(now))


def list_keys(session: Session, account_id: str, now: datetime) -> list[KeyView]:
    """The account's keys, newest first, revoked ones included."""
    keys = session.exec(
        select(ApiKey).where(col(ApiKey.account_id) == account_id).order_by(col(ApiKey.created_at).desc())
    ).all()
    month = month_key(now)
    return [_view(session, key, month) for key in keys]


def revoke_key(session: Session, *, account_id: str, key_id: str, now: datetime) -> KeyView:
    """Revoke the key (again is a no-op) and commit; AccountNotFound for no such key of this account."""
    key = session.get(ApiKey, key_id)
    if key is None or key.account_id != account_id:
        raise AccountNotFound(f"no API key {key_id[:64]!r} in this account")
    if key.revoked_at is None:
        key.revoked_at = now
        session.add(key)
        session.commit()
    return _view(session, key, month_key(now))


def find_key(session: Session, digest: str, now: datetime) -> tuple[KeyView, bool] | None:
    """The key with this digest and whether its account is disabled; None for none."""
    key = session.exec(select(ApiKey).where(col(ApiKey.digest) == digest)).first()
    if key is None:
        return None
    account = session.get(Account, key.account_id)
    return _view(session, key, month_key(now)), account is None or account.disabled


def _view(session: Session, key: ApiKey, month: str) -> KeyView:
    connection = session.connection()
    counts = counters.read(connection, counters.KEYS, key.key_id, month)
    leased = leases.holding(connection, month=month, key_id=key.key_id)
    return KeyView(
        key_id=key.key_id,
        account_id=key.account_id,
        name=key.name,
        hint=key.hint,
        created_at=as_utc(key.created_at),
        limits=KeyLimits(
            expires_at=as_utc(key.expires_at) if key.expires_at else None,
            monthly_request_limit=key.monthly_request_limit,
            monthly_budget_usd=key.monthly_budget_usd,
            rpm=key.rpm,
            allowed_models=tuple(m for m in key.allowed_models.split(",") if m),
        ),
        last_used_at=as_utc(key.last_used_at) if key.last_used_at else None,
        revoked=key.revoked_at is not None,
        # As the account's count: admitted and not yet settled counts, leased slots do not.
        requests_this_month=counts.used + counts.reserved - leased,
        spend_this_month_usd=counts.spent_usd,
    )
