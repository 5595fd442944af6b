"""`stepblend up --workers 2`: two gateway and two providers processes behind one
HTTP port and one chat port, with one router and one billing.

A system of its own (not the session's, which runs one worker). Which gateway
process served a request is read from the kernel, not from anything the gateway
says: the server side of the client's connection is a socket in /proc/net/tcp,
and exactly one gateway process holds that socket among its open files.
"""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stepblend.v1 import chat_pb2, chat_pb2_grpc
from tests.support.procs import free_port
from tests.support.system import TEST_PLANS, System, make_account, running_system
from tests.support.waiting import wait_until

CONCURRENT = 80
LIMIT = 20


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = Path(tmp_path_factory.mktemp("workers"))
    plans = root / "plans-twenty.toml"
    plans.write_text(TEST_PLANS + f"twenty = {LIMIT}\n")
    with running_system(
        root,
        "--workers",
        "2",
        STEPBLEND_PLANS_FILE=str(plans),
        # The per-gateway fairness cap must not be what refuses the burst below.
        STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT="0",
    ) as system:
        yield system


def children(pid: int, service: str) -> set[int]:
    """The pids of `stepblend serve SERVICE` processes whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if ppid == pid and argv[-3:-1] == [b"serve", service.encode()]:
            found.add(int(entry.name))
    return found


def owner(server_port: int, client_port: int, pids: set[int]) -> int:
    """Which of `pids` holds the server side of the loopback connection from `client_port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local, remote = (int(f.rpartition(":")[2], 16) for f in fields[1:3])
            if local == server_port and remote == client_port:
                inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if str(fd.readlink()) in inodes:
                    holders.add(pid)
            except OSError:
                continue
    assert len(holders) == 1, f"connection from port {client_port} held by {holders} of {pids}"
    return holders.pop()


def gateway_processes(system: System) -> set[int]:
    """The two gateway workers: forked by the one gateway process `stepblend up` started."""
    assert system.up is not None
    (parent,) = children(system.up.pid, "gateway")
    gateways = children(parent, "gateway")
    assert len(gateways) == 2, gateways
    return gateways


def gateway_port(system: System) -> int:
    return int(system.base_url.split(":")[2].split("/")[0])


def complete(system: System, token: str, content: str, gateways: set[int]) -> tuple[int, str, str, int]:
    """One chat completion on a connection of its own: status, request id, error code,
    and the gateway process that served it."""
    port = gateway_port(system)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.connect()
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        conn.request("POST", "/api/v1/chat/completions", json.dumps(body), headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
        served_by = owner(port, client_port, gateways)
        code = "" if response.status == 200 else answer["error"]["code"]
        return response.status, response.headers["x-request-id"], code, served_by
    finally:
        conn.close()


def test_up_runs_two_gateways_and_two_providers_named_in_its_output_and_logs(system: System) -> None:
    assert system.up is not None and system.up.stdout is not None
    (parent,) = children(system.up.pid, "gateway")
    gateways, providers = gateway_processes(system), children(system.up.pid, "providers")
    assert len(providers) == 2
    lines: list[str] = []
    while not lines or "Ctrl-C stops everything." not in lines[-1]:
        line = system.up.stdout.readline().decode()
        assert line, "stepblend up ended before it was ready:\n" + "".join(lines)
        lines.append(line)
    output = "".join(lines)
    assert "Workers: 2 gateway and 2 providers processes" in output
    named = {line.split(":")[0].strip(): int(line.split("pid ")[1].split(",")[0]) for line in lines if "pid " in line}
    assert named.keys() == {"gateway", "gateway-1", "gateway-2", "providers-1", "providers-2"}
    assert named["gateway"] == parent
    assert {named["gateway-1"], named["gateway-2"]} == gateways
    assert {named["providers-1"], named["providers-2"]} == providers
    logs = {p.name for p in (system.data_dir / "logs").glob("*.log")}
    assert {"gateway-1.log", "gateway-2.log", "providers-1.log", "providers-2.log"} <= logs
    assert "providers.log" not in logs
    for name in ("gateway-1", "gateway-2"):
        assert (Path("/proc") / str(named[name]) / "comm").read_text().strip() == name
        assert f"Started server process [{named[name]}]" in (system.data_dir / "logs" / f"{name}.log").read_text()


def test_the_gateway_workers_share_the_token_tables_their_parent_built(system: System) -> None:
    """Built once, before the fork: each worker's anonymous memory shared with the
    others (o200k_base's tables, about 46 MB) is counted once for the three of them.
    Processes started apart would share only the files they map."""
    for pid in gateway_processes(system):
        rollup = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        shared_anonymous_mb = int(rollup["Shared_Dirty"].split()[0]) / 1024
        assert shared_anonymous_mb > 40, (pid, shared_anonymous_mb)


def test_a_gateway_worker_that_dies_stops_the_others_and_stepblend_up(tmp_path: Path) -> None:
    with running_system(tmp_path, "--workers", "2") as own:
        assert own.up is not None
        (parent,) = children(own.up.pid, "gateway")
        first, second = sorted(children(parent, "gateway"))
        os.kill(second, 9)
        assert own.up.wait(timeout=60) == 1
        for pid in (parent, first):
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_requests_on_the_one_port_are_served_by_both_gateway_processes(system: System) -> None:
    gateways = gateway_processes(system)
    account = make_account(system)
    results = [complete(system, account.token, f"spread {i}", gateways) for i in range(16)]
    assert {status for status, *_ in results} == {200}
    # 16 connections, each placed by the kernel: both processes answered some.
    assert {served_by for *_, served_by in results} == gateways


def test_the_console_is_served_by_both_gateway_processes(system: System) -> None:
    gateways = gateway_processes(system)
    port = gateway_port(system)
    served_by = set()
    for _ in range(16):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.connect()
            assert conn.sock is not None
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200 and b"<html" in response.read().lower()
            served_by.add(owner(port, conn.sock.getsockname()[1], gateways))
        finally:
            conn.close()
    assert served_by == gateways


def test_a_plan_of_20_serves_exactly_20_of_80_concurrent_across_both_gateways(system: System) -> None:
    gateways = gateway_processes(system)
    account = make_account(system, plan="twenty")
    marker = f"workers-{uuid.uuid4().hex}"
    start = threading.Barrier(CONCURRENT)
    results: list[tuple[int, str, str, int]] = []

    def one(i: int) -> None:
        start.wait()
        results.append(complete(system, account.token, f"{marker} {i}", gateways))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == CONCURRENT

    statuses = Counter(status for status, *_ in results)
    assert statuses == {200: LIMIT, 429: CONCURRENT - LIMIT}, statuses
    assert {code for status, _, code, _ in results if status == 429} == {"plan_limit_exceeded"}
    # Both processes took part in the burst, and billing counted for both.
    assert {served_by for *_, served_by in results} == gateways
    assert sum(1 for r in system.mock_requests() if marker in str(r.get("body"))) == LIMIT

    # Every served request's usage event reached the ledger, counted, and nothing else did.
    served = sorted(request_id for status, request_id, _, _ in results if status == 200)

    def counted() -> list[str]:
        with sqlite3.connect(system.data_dir / "billing.db") as db:
            first = db.execute("SELECT account_id FROM ledger_entries WHERE request_id = ?", (served[0],)).fetchone()
            if first is None:
                return []
            rows = db.execute(
                "SELECT request_id FROM ledger_entries WHERE account_id = ? AND counted AND outcome = 'completed'",
                (first[0],),
            ).fetchall()
        return sorted(row[0] for row in rows)

    wait_until(lambda: counted() == served, timeout=30, what="the 20 served requests in the ledger")


async def test_the_grpc_chat_api_is_served_by_both_gateway_processes(system: System) -> None:
    gateways = gateway_processes(system)
    account = make_account(system)
    chat_port = int(system.chat_addr.rpartition(":")[2])
    request = chat_pb2.ChatRequest(
        model="gpt-4o-mini", messages=[chat_pb2.ChatMessage(role="user", content="Hello from a worker")]
    )
    # A channel of its own per call (no shared subchannel): a connection each, placed by the kernel.
    channels = [
        grpc.aio.insecure_channel(system.chat_addr, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(20)
    ]
    try:
        for channel in channels:
            answer = await chat_pb2_grpc.ChatStub(channel).Complete(
                request, metadata=(("authorization", f"Bearer {account.token}"),)
            )
            assert "Hello from a worker" in answer.choices[0].message.content
        holders = {pid for pid in gateways if _holds_connection_on(pid, chat_port)}
        assert holders == gateways
    finally:
        for channel in channels:
            await channel.close()


def _holds_connection_on(pid: int, port: int) -> bool:
    """Whether `pid` holds an established connection accepted on `port`."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "01" and int(fields[1].rpartition(":")[2], 16) == port:
                established.add(f"socket:[{fields[9]}]")
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if str(fd.readlink()) in established:
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--workers", "0"], {}, "--workers='0'"),
        ([], {"STEPBLEND_WORKERS": "many"}, "STEPBLEND_WORKERS='many'"),
    ],
)
def test_a_worker_count_that_is_not_a_whole_number_of_at_least_one_stops_up_naming_it(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stepblend", "--data-dir", str(tmp_path), "up", "--port", str(free_port()), *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_")}, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert named in done.stderr
    assert not (tmp_path / "services.json").exists()
