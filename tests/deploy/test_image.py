"""The container image's recipe: what can be checked without a container engine.

A real `docker build` needs a daemon and a registry that CI does not have; these
tests hold the Dockerfile to its promises (multi-stage, pinned base, non-root,
`stepblend serve NAME`) and keep deploy/docker/constraints.txt, the image's pins,
in step with pyproject.toml.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "deploy" / "docker" / "constraints.txt"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, heredocs skipped."""
    out: list[tuple[str, str]] = []
    lines = iter(DOCKERFILE.read_text().splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            following = next(lines)
            if not following.lstrip().startswith("#"):
                line = line[:-1] + " " + following.strip()
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
        word, _, args = line.strip().partition(" ")
        out.append((word.upper(), args.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def arg_default(name: str) -> str:
    for word, args in instructions():
        if word == "ARG" and args.startswith(f"{name}="):
            return args.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}")


def test_multi_stage_from_a_pinned_slim_python() -> None:
    froms = [stage[0][1] for stage in stages()]
    assert len(froms) >= 2, "a builder stage and a runtime stage"
    base = arg_default("PYTHON_IMAGE")
    assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), (
        f"base image {base!r}: pin a patch release of a slim Python"
    )
    for image in froms:
        image = image.split(" AS ")[0].replace("${PYTHON_IMAGE}", base)
        assert ":" in image and not image.endswith(":latest"), image


def test_runtime_runs_stepblend_serve_as_uid_10001() -> None:
    runtime = stages()[-1]
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1] in {"10001", "10001:10001"}, "numeric, so runAsNonRoot can check it"
    (entrypoint,) = [json.loads(args) for word, args in runtime if word == "ENTRYPOINT"]
    assert entrypoint == ["stepblend", "serve"], "exec form: the service is PID 1 and gets SIGTERM"
    (cmd,) = [json.loads(args) for word, args in runtime if word == "CMD"]
    assert cmd in (["gateway"], ["router"], ["providers"], ["billing"])
    assert not any(word == "COPY" and "--from=builder" in args and "/wheels" in args for word, args in runtime), (
        "wheels are bind-mounted into the install step, not copied into a layer"
    )


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore is an allow-list: every COPY source must be on it, and no data dir."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing, then allow"

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                keep = negated
        return keep

    sources = []
    for word, args in instructions():
        if word == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert included(source), f"COPY {source}: excluded by .dockerignore"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["readme"] in sources, "setuptools reads the readme while building"
    for secret_place in (".stepblend", ".venv", ".git", "tests"):
        assert not included(secret_place), f"{secret_place} must stay out of the build context"


def pins() -> dict[str, Version]:
    out: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = Version(version)
    return out


def test_constraints_pin_every_dependency_within_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pinned = pins()
    stale = []
    wanted = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"], "psycopg[binary]"]
    for spec in wanted:
        requirement = Requirement(spec)
        if requirement.marker and not requirement.marker.evaluate({"sys_platform": "linux"}):
            continue
        names = [requirement.name] + [
            f"{requirement.name}-{extra}" for extra in requirement.extras if requirement.name == "psycopg"
        ]
        for name in names:
            version = pinned.get(canonicalize_name(name))
            if version is None:
                stale.append(f"{name} is not pinned")
            elif name == requirement.name and not requirement.specifier.contains(version, prereleases=True):
                stale.append(f"{name}=={version} does not satisfy {spec!r}")
    assert not stale, (
        "deploy/docker/constraints.txt is stale (" + "; ".join(stale) + "): "
        "run `.venv/bin/python deploy/docker/lock.py`"
    )


def test_the_wheel_carries_the_files_the_services_read(tmp_path: Path) -> None:
    """The image installs the project's wheel: a data file left out of it (the token
    rank file, the catalog, the console) would start in a checkout and fail in a pod."""
    # From a copy of what the Dockerfile copies: setuptools would reuse a checkout's build/.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("services", "stepblend"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        check=True,
        capture_output=True,
        cwd=source,
    )
    [wheel] = tmp_path.glob("stepblend-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    authoring_only = {"alembic.ini", "script.py.mako"}  # billing builds its Alembic config in code
    data = [
        path.relative_to(ROOT).as_posix()
        for folder in ("services", "stepblend")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts
        and path.name not in authoring_only
    ]
    assert "services/gateway/encodings/fb374d419588a4632f3f557e76b4b70aebbca790" in data
    assert [name for name in data if name not in packed] == []
