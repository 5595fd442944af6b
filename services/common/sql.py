"""What billing and the providers' key vault share about their two databases."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["conflict_insert"]


def conflict_insert(dialect: str, service: str) -> Any:
    """The `insert` construct of the engine's dialect, the one with ON CONFLICT
    (SQLite's or PostgreSQL's). Loaded by name: the engine has loaded its own
    dialect, and the other is never loaded (PostgreSQL's would cost a SQLite
    deployment, `stepblend up`, about 2 MB in each service)."""
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"{service} runs on SQLite or PostgreSQL, not {dialect!r}")
    return importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert
