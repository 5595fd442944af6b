"""Real Node clients for the end-to-end tests, installed from the npm registry.

`tests/clients/node` pins them (package.json and its package-lock.json); `install`
runs `npm ci` on a copy of that folder and returns the copy. Install scripts run:
Claude Code's copies its platform's binary (an optional dependency) over its
`bin/claude.exe` placeholder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CLIENTS = Path(__file__).resolve().parent.parent / "clients" / "node"
NPM_TIMEOUT_S = 600


def install(into: Path) -> Path:
    """`tests/clients/node` with its node_modules installed, under `into`."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the Node client tests need Node.js and npm")
    target = into / "node"
    shutil.copytree(CLIENTS, target, ignore=shutil.ignore_patterns("node_modules"))
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm ci failed in {target}:\n{done.stdout}\n{done.stderr}")
    return target
