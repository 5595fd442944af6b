#!/usr/bin/env python3
"""Regenerate deploy/docker/constraints.txt: the exact releases the image installs.

    .venv/bin/python deploy/docker/lock.py

Resolves pyproject.toml's dependencies and build backend, plus the PostgreSQL
driver, for the image's Python (CPython 3.12, manylinux x86_64) from binary wheels
only, as `pip install --dry-run --report` sees them today, and writes one
`name==version` a line. Run it
after changing a dependency in pyproject.toml; tests/deploy/test_image.py says when
it is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("constraints.txt")
PYTHON_VERSION = "3.12"  # keep in step with the Dockerfile's PYTHON_IMAGE
EXTRA = ["psycopg[binary]"]  # the image talks to PostgreSQL; pyproject has no extra for it yet
# pip does not widen a manylinux tag to the older ones, so list those the image accepts.
PLATFORMS = ["manylinux2014_x86_64"] + [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35, 36)]

HEADER = """\
# The image's pinned Python dependencies, resolved for CPython 3.12 on manylinux x86_64
# (every one ships a binary wheel there, so the builder needs no compiler).
# The Dockerfile installs `pip install -c this-file . "psycopg[binary]"`: pyproject.toml
# says what StepBlend needs, this file says exactly which release goes into the image.
# tests/deploy/test_image.py fails when a dependency of pyproject.toml is missing here or
# its pin no longer satisfies pyproject's specifier. Regenerate with
# `.venv/bin/python deploy/docker/lock.py`.
"""


def main() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    # The build backend is pinned too: the Dockerfile sets PIP_CONSTRAINT, which pip
    # also applies inside the isolated build environment.
    build = pyproject["build-system"]["requires"]
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join([*project["dependencies"], *EXTRA, *build]) + "\n")
        report = Path(tmp) / "report.json"
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--only-binary=:all:",
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--target",
            str(Path(tmp) / "target"),
            "--report",
            str(report),
            "-r",
            str(requirements),
        ]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        subprocess.run(command, check=True)
        installs = json.loads(report.read_text())["install"]
    pins = sorted(
        f"{item['metadata']['name'].lower().replace('_', '-')}=={item['metadata']['version']}" for item in installs
    )
    OUT.write_text(HEADER + "\n".join(pins) + "\n")
    print(f"wrote {len(pins)} pins to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
