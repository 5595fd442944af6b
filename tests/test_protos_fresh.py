"""The generated code in stepblend/v1 is exactly what the protos generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.gen_protos import ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in generate(tmp_path)}
    committed = {p.relative_to(ROOT): p.read_bytes() for p in (ROOT / "stepblend" / "v1").glob("*_pb2*.py*")}
    assert fresh.keys() == committed.keys(), "run: python scripts/gen_protos.py"
    stale = [str(name) for name, content in fresh.items() if committed[name] != content]
    if stale:
        pytest.fail(f"stale generated code {stale}: run python scripts/gen_protos.py")
