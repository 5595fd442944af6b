"""Rate limits on sign-ups and sign-ins, per client address and per email.

A public StepBlend must not let anyone guess passwords, or probe which emails have
accounts, at the speed of its CPU. Each sign-up and sign-in is charged, before any
password is hashed, to two counters: its client's address and the email it names,
in fixed windows of `window_s` seconds. A charge over either limit is refused with
the seconds until the window ends. Sign-up and sign-in share the counters, so
probing sign-up for registered emails is exactly as slow as probing sign-in.

The counters are rows of billing's database (`auth_attempts`), written with one
upsert each, so the limits hold across every gateway and billing replica. Old
windows of a key are deleted as it is charged again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

__all__ = ["AuthLimits", "charge"]

_CHARGE = text(
    "INSERT INTO auth_attempts (key, window_start, attempts) VALUES (:key, :window, 1) "
    "ON CONFLICT (key, window_start) DO UPDATE SET attempts = auth_attempts.attempts + 1 "
    "RETURNING attempts"
)
_FORGET = text("DELETE FROM auth_attempts WHERE key = :key AND window_start < :window")


@dataclass(frozen=True)
class AuthLimits:
    """Attempts allowed per window; 0 turns a limit off."""

    per_address: int = 30
    per_email: int = 10
    window_s: int = 60


def charge(connection: Connection, limits: AuthLimits, *, address: str, email: str, now: float) -> int:
    """Count one attempt for `address` and `email` (either may be empty: not
    counted); 0 when within both limits, else the seconds until the window ends."""
    window = int(now) // limits.window_s * limits.window_s
    over = False
    for key, limit in (
        (f"address:{address}", limits.per_address),
        (f"email:{email.strip().lower()}", limits.per_email),
    ):
        if limit <= 0 or key.endswith(":"):
            continue
        connection.execute(_FORGET, {"key": key, "window": window})
        attempts = connection.execute(_CHARGE, {"key": key, "window": window}).scalar_one()
        over = over or attempts > limit
    return max(1, window + limits.window_s - int(now)) if over else 0
