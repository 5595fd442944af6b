"""Plans as data: each plan's name and its monthly request limit (SPEC.md §3).

The defaults are free, starter, pro and enterprise. An operator replaces them
all with a TOML file named by `STEPBLEND_PLANS_FILE`:

    default_plan = "trial"      # optional: the plan of an account created without one

    [plans]
    trial = 50
    team = 200000
    enterprise = 0              # 0 means unlimited

The file is validated once, at start-up: a bad file stops the service rather
than leaving accounts with limits nobody meant.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

__all__ = ["DEFAULT_LIMITS", "Plan", "PlanBook", "PlansFileError", "load_plans"]

# None is unlimited. A plain mapping of immutable values, exposed read-only.
DEFAULT_LIMITS: Mapping[str, int | None] = MappingProxyType(
    {"free": 1_000, "starter": 50_000, "pro": 1_000_000, "enterprise": None}
)
_DEFAULT_PLAN = "free"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class PlansFileError(ValueError):
    """The plans file is missing, not TOML, or describes plans that make no sense."""


@dataclass(frozen=True)
class Plan:
    """One plan: its name and how many requests it admits per calendar month (UTC)."""

    name: str
    monthly_limit: int | None  # None: unlimited

    @property
    def wire_limit(self) -> int:
        """The limit as the protobuf carries it, where 0 means unlimited."""
        return self.monthly_limit or 0


@dataclass(frozen=True)
class PlanBook:
    """The plans in force, and the one a new account gets when it names none."""

    plans: Mapping[str, Plan]
    default: str

    def __post_init__(self) -> None:
        if not self.plans:
            raise PlansFileError("at least one plan is required")
        if self.default not in self.plans:
            raise PlansFileError(f"default plan {self.default!r} is not one of the plans")

    def get(self, name: str) -> Plan | None:
        """The plan called `name` (case-insensitive), or None when there is none."""
        return self.plans.get(name.strip().lower())

    def plan_of(self, name: str) -> Plan:
        """The plan an account on `name` is held to.

        An operator may remove a plan from the file while accounts are still on it;
        those accounts are held to the default plan's limit rather than to none.
        """
        return self.get(name) or self.plans[self.default]

    @classmethod
    def from_limits(cls, limits: Mapping[str, int | None], default: str | None = None) -> PlanBook:
        """Validate `limits` (name → monthly limit; 0 or None is unlimited) into a book.

        Without an explicit `default`, new accounts get "free" when it exists, else the
        first plan listed.
        """
        plans: dict[str, Plan] = {}
        for raw_name, limit in limits.items():
            name = raw_name.strip().lower() if isinstance(raw_name, str) else raw_name
            if not isinstance(name, str) or not _NAME.match(name):
                raise PlansFileError(
                    f"plan name {raw_name!r} must be 1-32 characters of a-z, 0-9, '_' or '-', starting with a letter"
                )
            if name in plans:
                raise PlansFileError(f"plan {name!r} is listed twice")
            # bool is an int in Python; `pro = true` is a typo, not a limit of 1.
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
                raise PlansFileError(f"plan {name!r}: the limit must be a whole number, got {limit!r}")
            if limit is not None and limit < 0:
                raise PlansFileError(f"plan {name!r}: the limit must not be negative")
            plans[name] = Plan(name=name, monthly_limit=limit or None)
        if not plans:
            raise PlansFileError("at least one plan is required")
        chosen = default.strip().lower() if default is not None else None
        if chosen is None:
            chosen = _DEFAULT_PLAN if _DEFAULT_PLAN in plans else next(iter(plans))
        return cls(plans=MappingProxyType(plans), default=chosen)


def load_plans(path: str | Path | None) -> PlanBook:
    """The plans in `path` (a TOML file), or the defaults when `path` is empty or None.

    Raises PlansFileError when the file cannot be read or is not valid.
    """
    if not path:
        return PlanBook.from_limits(DEFAULT_LIMITS)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise PlansFileError(f"cannot read plans file {str(path)!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PlansFileError(f"plans file {str(path)!r} is not valid TOML: {exc}") from exc

    unknown = set(data) - {"plans", "default_plan"}
    if unknown:
        raise PlansFileError(f"plans file {str(path)!r}: unknown keys {sorted(unknown)}")
    table = data.get("plans")
    if not isinstance(table, dict) or not table:
        raise PlansFileError(f"plans file {str(path)!r} needs a non-empty [plans] table")
    default = data.get("default_plan")
    if default is not None and not isinstance(default, str):
        raise PlansFileError(f"plans file {str(path)!r}: default_plan must be a plan name")
    try:
        return PlanBook.from_limits(table, default)
    except PlansFileError as exc:
        raise PlansFileError(f"plans file {str(path)!r}: {exc}") from None
