from __future__ import annotations

from pathlib import Path

import pytest

from services.billing.plans import DEFAULT_LIMITS, PlanBook, PlansFileError, load_plans


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plans.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_spec_table() -> None:
    book = load_plans(None)
    assert {name: plan.monthly_limit for name, plan in book.plans.items()} == {
        "free": 1_000,
        "starter": 50_000,
        "pro": 1_000_000,
        "enterprise": None,
    }
    assert book.default == "free"
    assert book.plans["enterprise"].wire_limit == 0
    assert load_plans("").plans == book.plans
    assert dict(DEFAULT_LIMITS)["pro"] == 1_000_000


def test_lookup_is_case_insensitive_and_unknown_is_none() -> None:
    book = load_plans(None)
    plan = book.get(" Pro ")
    assert plan is not None and plan.name == "pro"
    assert book.get("platinum") is None


def test_an_account_on_a_removed_plan_is_held_to_the_default() -> None:
    book = load_plans(None)
    assert book.plan_of("legacy-gold").name == "free"


def test_file_replaces_the_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, '[plans]\ntrial = 50\nteam = 200000\n"Unlimited" = 0\n')
    book = load_plans(path)
    assert set(book.plans) == {"trial", "team", "unlimited"}
    assert book.plans["trial"].monthly_limit == 50
    assert book.plans["unlimited"].monthly_limit is None
    # No "free" and no default_plan: the first plan listed is the default.
    assert book.default == "trial"


def test_file_may_name_the_default_plan(tmp_path: Path) -> None:
    path = _write(tmp_path, 'default_plan = "starter"\n[plans]\nfree = 10\nstarter = 20\n')
    assert load_plans(str(path)).default == "starter"
    keeps_free = _write(tmp_path, "[plans]\npro = 5\nfree = 10\n")
    assert load_plans(keeps_free).default == "free"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[plans", "not valid TOML"),
        ("trial = 50\n", "unknown keys"),
        ("[other]\ntrial = 50\n", "unknown keys"),
        ("[plans]\n", "non-empty [plans]"),
        ("plans = 3\n", "non-empty [plans]"),
        ("[plans]\ntrial = -1\n", "must not be negative"),
        ("[plans]\ntrial = 1.5\n", "whole number"),
        ("[plans]\ntrial = true\n", "whole number"),
        ('[plans]\ntrial = "50"\n', "whole number"),
        ("[plans]\n[plans.trial]\nlimit = 5\n", "whole number"),
        ('[plans]\n"has space" = 5\n', "plan name"),
        ('[plans]\n"" = 5\n', "plan name"),
        ("[plans]\nTrial = 5\ntrial = 6\n", "listed twice"),
        ('default_plan = "gold"\n[plans]\ntrial = 5\n', "default plan 'gold'"),
        ("default_plan = 3\n[plans]\ntrial = 5\n", "default_plan must be"),
    ],
)
def test_bad_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PlansFileError) as caught:
        load_plans(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PlansFileError, match="cannot read"):
        load_plans(tmp_path / "nope.toml")


def test_book_needs_a_plan() -> None:
    with pytest.raises(PlansFileError):
        PlanBook.from_limits({})
