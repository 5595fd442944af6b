#!/usr/bin/env python3
"""Set up and run StepBlend from a fresh clone, needing only Python 3.11+.

    python3 dev.py up [--demo] [--port 8080]   # the whole system on this machine
    python3 dev.py test [pytest args]          # the test suite (installs Debian's
                                               # chromium for the console tests if missing)

Creates .venv beside this file and installs the project into it (again only
when pyproject.toml changed), then runs `stepblend up` or pytest inside it. pytest
runs under tests/support/harness.py: Ctrl-C or SIGTERM stops every process the
tests started and removes their temporary directories.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py itself may run on an older Python
        raise SystemExit("StepBlend needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        venv.create(VENV, with_pip=True)
    stamp = VENV / f".installed-{extras or 'base'}"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    print(f"Installing StepBlend into {VENV} (the first time takes a few minutes)...", flush=True)
    _pip("install", "--quiet", "--upgrade", "pip")
    _pip("install", "--quiet", "-e", target)
    stamp.write_text(want)


def _pip(*args: str) -> None:
    """pip, its output shown only when it fails: the build backend's warnings (e.g.
    setuptools' "Editable installation" banner) are not the user's business."""
    done = subprocess.run([BIN / "python", "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"pip {' '.join(args)} failed (exit code {done.returncode})")


def ensure_chromium() -> None:
    """tests/console drives Debian's Chromium through Playwright (never a downloaded
    browser): install it where it is missing and this user may."""
    if Path("/usr/bin/chromium").exists() or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("up", "test"):
        raise SystemExit(__doc__)
    command, args = sys.argv[1], sys.argv[2:]
    os.chdir(ROOT)
    if command == "up":
        ensure_venv("")
        os.execv(BIN / "stepblend", [str(BIN / "stepblend"), "up", *args])
    ensure_venv("test")
    ensure_chromium()
    from tests.support.harness import run  # standard library only

    sys.exit(run(str(BIN / "python"), args))


if __name__ == "__main__":
    main()
