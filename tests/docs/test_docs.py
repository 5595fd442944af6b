"""The user documentation stays true to the code.

The checks read a copy of the repository's tracked files (what a clone has), never the
working directory around it: docs/api.md must name every route the gateway serves and
every error code the services can return, and no Markdown link in README.md or docs/
may point at a file that is missing or outside the repository.

Error codes are found by reading services/ (all of it, so a module split or a new
module is covered): `code=` arguments and `code` assignments, positional arguments in
the place of a parameter named `code`, defaults of such parameters, codes built as
f"{param}_suffix" from the literal arguments of the function's callers, and the values
of enums named `...Code`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CODE_SHAPE = re.compile(r"^[a-z][a-z0-9_]*$")
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")

# Builds the gateway's app without serving it and prints its routes, walking
# included routers whether FastAPI flattens them or keeps them nested.
ROUTES_SCRIPT = """
import json
from services.common.config import Settings
from services.gateway.app import create_app

def walk(routes, prefix):
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:
            yield from walk(route.original_router.routes, prefix + context.prefix)
            continue
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None and getattr(endpoint, "__module__", "").startswith("fastapi."):
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, prefix + route.path

print(json.dumps(sorted(set(walk(create_app(Settings()).routes, "")))))
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files, copied as a clone would have them."""
    listed = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    )
    target = tmp_path_factory.mktemp("clone")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / name)
    return target


def _served_routes(clone: Path) -> list[tuple[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_")}
    env["PYTHONPATH"] = str(clone)
    done = subprocess.run(
        [sys.executable, "-c", ROUTES_SCRIPT], cwd=clone, env=env, check=True, capture_output=True, text=True
    )
    return [(method, path) for method, path in json.loads(done.stdout.strip().splitlines()[-1])]


def test_every_route_the_gateway_serves_is_in_the_api_reference(clone: Path) -> None:
    api = (clone / "docs" / "api.md").read_text()
    routes = _served_routes(clone)
    assert ("POST", "/api/v1/chat/completions") in routes and ("GET", "/v1/models") in routes
    missing = []
    for method, path in routes:
        canonical = "/api" + path if path.startswith("/v1/") else path
        named = f"`{path}`" in api
        with_method = any(method in line and f"`{canonical}`" in line for line in api.splitlines())
        if not (named and with_method):
            missing.append(f"{method} {path}")
    assert not missing, f"routes the gateway serves but docs/api.md does not document: {missing}"


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _literals(node: ast.AST) -> Iterator[str]:
    """String constants of an expression, leaving out the pieces of f-strings."""
    if isinstance(node, ast.JoinedStr):
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
        return
    for child in ast.iter_child_nodes(node):
        yield from _literals(child)


class _Scan:
    """Every error code a services/ tree can produce (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.trees = [ast.parse(path.read_text(), str(path)) for path in sorted(root.rglob("*.py"))]
        self.codes: set[str] = set()
        self.code_position: dict[str, int] = {}  # callable name -> positional index of `code`
        self.params: dict[str, list[str]] = {}  # function name -> positional parameter names
        self.templates: list[tuple[str, int, str, str]] = []  # (function, param index, prefix, suffix)

    def run(self) -> set[str]:
        for tree in self.trees:
            self._signatures(tree)
        for tree in self.trees:
            self._collect(tree, enclosing="")
        for tree in self.trees:
            self._fill_templates(tree)
        return {code for code in self.codes if CODE_SHAPE.match(code)}

    def _signatures(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                if node.name.endswith("Code") and any(_name(base).endswith("Enum") for base in node.bases):
                    for item in node.body:
                        if isinstance(item, ast.Assign):
                            self.codes.update(_literals(item.value))
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        self._signature(node.name, item.args, skip=1)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._signature(node.name, node.args, skip=0)

    def _signature(self, name: str, args: ast.arguments, skip: int) -> None:
        positional = [a.arg for a in (args.posonlyargs + args.args)][skip:]
        self.params.setdefault(name, positional)
        if "code" in positional:
            self.code_position.setdefault(name, positional.index("code"))
        every = args.posonlyargs + args.args + args.kwonlyargs
        defaults = [None] * (len(args.posonlyargs + args.args) - len(args.defaults)) + list(args.defaults)
        for arg, default in zip(every, defaults + list(args.kw_defaults), strict=True):
            if arg.arg == "code" and default is not None:
                self.codes.update(_literals(default))

    def _collect(self, node: ast.AST, enclosing: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            enclosing = node.name
        values: list[ast.expr] = []
        if isinstance(node, ast.Call):
            values += [kw.value for kw in node.keywords if kw.arg == "code"]
            index = self.code_position.get(_name(node.func))
            if index is not None and index < len(node.args):
                values.append(node.args[index])
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                values.append(node.value)
        for value in values:
            self.codes.update(_literals(value))
            self._template(value, enclosing)
        for child in ast.iter_child_nodes(node):
            self._collect(child, enclosing)

    def _template(self, value: ast.expr, enclosing: str) -> None:
        if not isinstance(value, ast.JoinedStr):
            return
        parts = value.values
        holes = [p for p in parts if isinstance(p, ast.FormattedValue)]
        if len(holes) != 1 or not isinstance(holes[0].value, ast.Name):
            return
        param = holes[0].value.id
        if param not in self.params.get(enclosing, []):
            return
        at = parts.index(holes[0])
        prefix = "".join(str(p.value) for p in parts[:at] if isinstance(p, ast.Constant))
        suffix = "".join(str(p.value) for p in parts[at + 1 :] if isinstance(p, ast.Constant))
        self.templates.append((enclosing, self.params[enclosing].index(param), prefix, suffix))

    def _fill_templates(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for function, index, prefix, suffix in self.templates:
                if _name(node.func) == function and index < len(node.args):
                    arg = node.args[index]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        self.codes.add(prefix + arg.value + suffix)


def test_every_error_code_the_services_return_is_in_the_api_reference(clone: Path) -> None:
    codes = _Scan(clone / "services").run()
    # The scan itself must see codes from each place they come from: the gateway's own,
    # one built from a template, the router's refusals, the providers' outcomes.
    assert {"request_too_large", "billing_unavailable", "no_eligible_model", "provider_key_invalid"} <= codes
    api = (clone / "docs" / "api.md").read_text()
    missing = sorted(code for code in codes if f"`{code}`" not in api)
    assert not missing, f"error codes the services can return but docs/api.md does not document: {missing}"


def test_links_in_readme_and_docs_point_at_files_in_the_repository(clone: Path) -> None:
    pages = [clone / "README.md", *sorted((clone / "docs").rglob("*.md"))]
    assert len(pages) >= 5
    broken = []
    for page in pages:
        text = page.read_text()
        if "../shared" in text:
            broken.append(f"{page.relative_to(clone)} mentions ../shared, which a clone does not have")
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            resolved = (page.parent / target.split("#")[0]).resolve()
            if not resolved.is_relative_to(clone.resolve()) or not resolved.exists():
                broken.append(f"{page.relative_to(clone)} -> {target}")
    assert not broken, f"links to nowhere: {broken}"
