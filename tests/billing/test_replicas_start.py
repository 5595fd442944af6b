"""Billing replicas starting together on one new SQLite file all come up.

(a) Four processes run billing's start-up (`main.open_database`: the engine, the
    writer's held connection, the migrations) released at the same instant by a
    barrier, on a file none of them has seen; every one must succeed, twenty
    rounds in a row. Before the start-up lock (db.startup_lock) a round in five
    to thirty lost a replica to "database is locked" while another switched the
    file to WAL: SQLite refuses that lock at once, without its busy timeout.
(b) Four real `stepblend serve billing` processes started together must all answer
    their gRPC health check, three rounds in a row.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.billing.main import open_database
from services.common.grpcio import TOKEN_HEADER
from tests.support.procs import NatsServer, free_port

REPLICAS = 4
ROUNDS = 3
BARRIER_ROUNDS = 20
START_TIMEOUT_S = 60.0


def _start_replica(url: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue[str]) -> None:
    barrier.wait()
    try:
        engine, writer = open_database(url)
        writer.close()
        engine.dispose()
        results.put("ok")
    except Exception as exc:  # reported to the test, which fails on it
        results.put(repr(exc))


@pytest.mark.parametrize("round_", range(BARRIER_ROUNDS))
def test_replicas_released_together_all_open_the_database(tmp_path: Path, round_: int) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(REPLICAS)
    results: multiprocessing.Queue[str] = context.Queue()
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    procs = [context.Process(target=_start_replica, args=(url, barrier, results)) for _ in range(REPLICAS)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert outcomes == ["ok"] * REPLICAS


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    try:
        yield server
    finally:
        server.stop()


def _healthy(address: str, token: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"billing at {address} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5, metadata=((TOKEN_HEADER, token),))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    pytest.fail(f"billing at {address} not healthy after {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_four_replicas_start_together_on_a_new_file(tmp_path: Path, nats: NatsServer, round_: int) -> None:
    token = secrets.token_urlsafe(24)
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(REPLICAS):
            port = free_port()
            log = tmp_path / f"billing-{i}.log"
            env = dict(
                os.environ,
                STEPBLEND_HOST="127.0.0.1",
                STEPBLEND_PORT=str(port),
                STEPBLEND_DATABASE_URL=url,
                STEPBLEND_NATS_URL=nats.url,
                STEPBLEND_INTERNAL_TOKEN=token,
                STEPBLEND_DATA_DIR=str(tmp_path),
            )
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "stepblend", "serve", "billing"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            procs.append((f"127.0.0.1:{port}", proc, log))
        for address, proc, log in procs:
            _healthy(address, token, proc, log)
    finally:
        for _, proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
