"""The shared retry helper: retries only what it is told to, then lets the last error through."""

from __future__ import annotations

import pytest

from services.common import retry


class Flaky(Exception):
    pass


def test_a_transient_error_is_retried_until_the_work_succeeds() -> None:
    tries: list[int] = []
    retried: list[int] = []

    def work() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise Flaky("not yet")
        return "done"

    result = retry.call(
        work, attempts=5, retry_if=lambda e: isinstance(e, Flaky), on_retry=lambda n, _: retried.append(n)
    )
    assert result == "done" and len(tries) == 3 and retried == [1, 2]


def test_other_errors_are_not_retried_and_the_last_one_propagates_unwrapped() -> None:
    tries: list[int] = []

    def refuses() -> None:
        tries.append(1)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        retry.call(refuses, attempts=5, retry_if=lambda e: isinstance(e, Flaky))
    assert len(tries) == 1

    def always_flaky() -> None:
        tries.append(1)
        raise Flaky("still down")

    with pytest.raises(Flaky, match="still down"):
        retry.call(always_flaky, attempts=3, retry_if=lambda e: isinstance(e, Flaky), first_delay_s=0.001)
    assert len(tries) == 4
