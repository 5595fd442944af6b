"""A throwaway PostgreSQL cluster for tests: initdb into a temporary directory,
fsync off, a random port on loopback, trust authentication, stopped and deleted
at the end.

PostgreSQL refuses to run as root, so when the tests run as root the server's
commands run as the `postgres` user (which the PostgreSQL packages create), in
a directory that user owns. Missing binaries are an error, never a skip: the
billing tests promise to have run against PostgreSQL.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from tests.support.procs import free_port

__all__ = ["PostgresCluster", "find_bindir"]

_CANDIDATE_BINDIRS = ("/usr/lib/postgresql/15/bin",)
_SERVER_USER = "postgres"


def find_bindir() -> Path:
    """The directory of PostgreSQL's server binaries (initdb, pg_ctl); raises when there is none."""
    candidates = [Path(p) for p in _CANDIDATE_BINDIRS]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise RuntimeError(
        "PostgreSQL server binaries not found (looked in "
        f"{', '.join(str(c) for c in candidates)}): install postgresql-15 to run billing's PostgreSQL tests"
    )


class PostgresCluster:
    """One running PostgreSQL server; databases are created in it per test."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="stepblend-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = _SERVER_USER
            entry = pwd.getpwnam(_SERVER_USER)  # KeyError: no postgres user — loud, as it should be
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def start(self) -> PostgresCluster:
        """initdb and start the server; returns when it accepts connections."""
        # Started from a process full of gRPC threads, the child has been seen killed by a
        # signal (SIGBUS) before initdb ran, once in hundreds: that alone is tried again.
        for attempt in Retrying(retry=retry_if_exception_type(_Killed), stop=stop_after_attempt(3), reraise=True):
            with attempt:
                shutil.rmtree(self.data, ignore_errors=True)
                self._run(
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                )
        for attempt in range(3):  # the random port may be taken between choosing and binding it
            self.port = free_port()
            options = (
                f"-F -p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-o", options, "start"
                )
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server at once and delete its files."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` in this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, template: str | None = None) -> str:
        """A new, uniquely named database (a copy of `template` when given); its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            # FILE_COPY: copying a small template's files beats WAL-logging every block (~15 ms vs ~250).
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        with psycopg.connect(self._admin_dsn(), autocommit=True) as connection:
            connection.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        """Drop `name`, disconnecting whoever is still in it."""
        with psycopg.connect(self._admin_dsn(), autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / program), *args],
            check=False,
            user=self._user,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            failure = _Killed if result.returncode < 0 else RuntimeError
            raise failure(f"{program} failed ({result.returncode}): {result.stderr or result.stdout}\n{tail}")


class _Killed(RuntimeError):
    """A server command was killed by a signal (a negative return code)."""
