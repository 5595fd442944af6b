"""Calendar months in UTC, the unit plans are counted in (SPEC.md §3), and the clock.

Time comes from a `Clock` — a callable returning Unix seconds, `time.time` in
production — passed down from `main`, so that tests can stand at 23:59:59 on
the 31st and then step into the next month.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "as_utc", "moment", "month_end", "month_key", "month_start"]

Clock = Callable[[], float]


def moment(seconds: float) -> datetime:
    """Unix `seconds` as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def as_utc(stored: datetime) -> datetime:
    """A timestamp as the database hands it back, aware: SQLite's are naive, and every
    timestamp billing stores is UTC."""
    return stored if stored.tzinfo is not None else stored.replace(tzinfo=UTC)


def month_key(at: datetime) -> str:
    """The "YYYY-MM" key of the UTC month `at` falls in."""
    return at.astimezone(UTC).strftime("%Y-%m")


def month_start(key: str) -> int:
    """Unix seconds at 00:00:00 UTC on the first day of month `key` ("YYYY-MM")."""
    year, month = key.split("-")
    return int(datetime(int(year), int(month), 1, tzinfo=UTC).timestamp())


def month_end(key: str) -> datetime:
    """00:00:00 UTC on the first day of the month after `key`: the first moment not in it."""
    year, month = (int(part) for part in key.split("-"))
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
