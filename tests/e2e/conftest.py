"""The real system, started once per session with `stepblend up` (see
tests/support/system.py). Tests that don't disturb it share it, each with an
account of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.system import PROVIDERS, Account, System, make_account, running_system

__all__ = ["PROVIDERS", "Account", "System", "make_account"]


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(Path(tmp_path_factory.mktemp("stepblend")), STEPBLEND_SSE_KEEPALIVE_SECONDS="1") as system:
        yield system


@pytest.fixture
def account(system: System) -> Account:
    return make_account(system)
