"""Soak: does any StepBlend process grow over 50,000 requests?

    python bench/soak.py                 # 50,000 requests, a few minutes
    python bench/soak.py --requests 10000 --max-seconds 300

Starts the microsecond mock provider (bench/fastmock.py) and `stepblend up` the way
bench/run.py does (StepBlend on core 0, load and mock on core 1), then drives rounds
of mixed load until the request count is reached (or the time bound is): sequential
plain and streamed completions on one keep-alive connection, requests the gateway
refuses (unknown model, invalid body), streams abandoned after their first chunk,
and concurrent load from wrk — at 32 connections, and bursts at 96 that run into the
per-account concurrency limit (their 429s are expected).

RSS (VmRSS) of every process is taken after a warm-up (10% of `--requests`, and at
least 150 s: nats-server keeps every message id of its 120 s duplicate window, so its
memory grows with the event rate until the window is full) and again once `--requests`
more have been served; the soak passes when each stays within 10% of its warm-up figure
(LiteLLM users report steady leaks: BerriAI/litellm#12685, #27954). A benchmark, not
a CI test: it prints a table and exits 1 when a process grew too much.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import LOAD_CORE, body, launch, stop, tree  # bench/run.py, beside this file

TOLERANCE = 0.10


def rss_by_process(pids: list[int]) -> dict[str, float]:
    """VmRSS in MB of each process of the tree, named by what it runs."""
    found: dict[str, float] = {}
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if b"serve" in argv:
            name = argv[argv.index(b"serve") + 1].decode()
        elif b"up" in argv:
            name = "supervisor"
        else:
            name = Path(argv[0].decode()).name
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                found[name] = found.get(name, 0.0) + int(line.split()[1]) / 1024
    return found


class Client:
    """One keep-alive connection to the gateway, reconnecting when it is closed."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, payload: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request("POST", "/api/v1/chat/completions", payload, self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                # An idle keep-alive connection (while wrk ran) was closed by the server.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def abandon_stream(self, payload: bytes) -> None:
        """Send a streaming request, read its first chunk, hang up."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            head = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            sock.sendall(
                f"POST /api/v1/chat/completions HTTP/1.1\r\nhost: x\r\n{head}content-length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            seen = b""
            while b"data: " not in seen:
                piece = sock.recv(4096)
                if not piece:
                    break
                seen += piece


def sequential_round(client: Client, n: int, unexpected: Counter[str]) -> int:
    """n requests on one connection: plain, streamed, refused, abandoned; returns n."""
    plain, streamed = body(False), body(True, 20)
    unknown = json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    invalid = b'{"model": "gpt-4o-mini", "messages": []}'
    for i in range(n):
        kind = i % 20
        if kind == 19:
            client.abandon_stream(body(True, 200))
            continue
        payload, expected = (
            (unknown, 404) if kind == 17 else (invalid, 400) if kind == 18 else (streamed if kind % 2 else plain, 200)
        )
        status, answer = client.post(payload)
        if status != expected:
            unexpected[f"sequential {status} (expected {expected}): {answer[:160]!r}"] += 1
    return n


# bench/post.lua plus a tally of the statuses other than 200, and the first such body.
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; first_body = nil end
function response(status, headers, body)
  if status ~= 200 then
    statuses[status] = (statuses[status] or 0) + 1
    if first_body == nil then first_body = body end
  end
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do io.write(string.format("status %d %d\\n", status, count)) end
    local body = thread:get("first_body")
    if body then io.write("body " .. string.sub(body, 1, 200) .. "\\n") end
  end
end
"""


def wrk_round(port: int, token: str, connections: int, seconds: int, stream: bool) -> tuple[int, dict[str, int]]:
    """Requests wrk sent, and what went wrong: answers other than 200 by status (with
    the first such body), socket errors by kind."""
    env = dict(os.environ, BENCH_BODY=body(stream, 20).decode(), BENCH_TOKEN=token)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_WRK_SCRIPT)
        script.flush()
        out = subprocess.run(
            [
                "taskset",
                "-c",
                LOAD_CORE,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}/api/v1/chat/completions",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    sent = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    problems: dict[str, int] = {}
    first = re.search(r"^body (.*)$", out, re.MULTILINE)
    for status, count in re.findall(r"^status (\d+) (\d+)$", out, re.MULTILINE):
        problems[f"status {status}" + (f" {first.group(1)!r}" if first and status != "429" else "")] = int(count)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sockets:
        for kind, count in zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True):
            if count:
                problems[f"socket {kind}"] = count
    return sent, problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--max-seconds", type=int, default=900, help="stop (and say so) after this long")
    parser.add_argument("--warmup-seconds", type=int, default=150)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    data_dir, (up, mock, port, _mock_port, token) = launch("stepblend-soak-")
    started = time.monotonic()
    sent = refused_burst = 0
    unexpected: Counter[str] = Counter()
    warm: dict[str, float] = {}
    trend: list[tuple[int, dict[str, float]]] = []
    try:
        pids = tree(up.pid)
        client = Client(port, token)
        warm_at = args.requests // 10
        warm_sent = 0
        rounds = 0
        # Until `--requests` have been served after the warm-up (a fast tree finishes its
        # first 50,000 before nats-server's duplicate window has filled).
        while (not warm or sent - warm_sent < args.requests) and time.monotonic() - started < args.max_seconds:
            rounds += 1
            sent += sequential_round(client, 1_000, unexpected)
            n, problems = wrk_round(port, token, 32, 5, stream=rounds % 2 == 0)
            sent += n
            unexpected.update({f"wrk at 32 connections: {k}": v for k, v in problems.items()})
            if rounds % 5 == 0:
                # Over the per-account limit (64): 429s are the point here.
                n, problems = wrk_round(port, token, 96, 1, stream=False)
                sent += n
                refused_burst += problems.pop("status 429", 0)
                unexpected.update({f"wrk at 96 connections: {k}": v for k, v in problems.items()})
                # Requests wrk left behind when it hung up hold their slots until they end.
                time.sleep(1)
            if not warm and sent >= warm_at and time.monotonic() - started >= args.warmup_seconds:
                time.sleep(1)
                warm, warm_sent = rss_by_process(pids), sent
                print(
                    f"warm-up done at {sent} requests: " + ", ".join(f"{k} {v:.1f}" for k, v in warm.items()),
                    flush=True,
                )
            trend.append((sent, rss_by_process(pids)))
            print(
                f"{sent:>7} requests, {time.monotonic() - started:5.0f} s, RSS MB "
                + " ".join(f"{k}={v:.1f}" for k, v in trend[-1][1].items()),
                flush=True,
            )
        time.sleep(2)  # let the last usage events settle
        end = rss_by_process(pids)
    finally:
        stop(up, mock, data_dir)

    elapsed = time.monotonic() - started
    bounded = not warm or sent - warm_sent < args.requests
    print(
        f"\n{sent} requests in {elapsed:.0f} s{' (stopped by --max-seconds)' if bounded else ''}; "
        f"{sum(unexpected.values())} unexpected answers; {refused_burst} refused over the concurrency limit in bursts"
    )
    for what, count in unexpected.most_common():
        print(f"  {count} x {what}")
    print(f"{'process':<12}{'warm MB':>10}{'end MB':>10}{'change':>10}  within {TOLERANCE:.0%}")
    failed = bool(unexpected) or not warm
    if not warm:
        print("the warm-up was never reached: nothing to compare (raise --max-seconds)")
    figures: dict[str, object] = {"requests": sent, "seconds": elapsed, "unexpected": dict(unexpected), "processes": {}}
    for name, before in warm.items():
        after = end.get(name, 0.0)
        change = (after - before) / before
        ok = after <= before * (1 + TOLERANCE)
        failed |= not ok
        print(f"{name:<12}{before:>10.1f}{after:>10.1f}{change:>+10.1%}  {'yes' if ok else 'NO'}")
        figures["processes"][name] = {"warm_mb": before, "end_mb": after}  # type: ignore[index]
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "trend": trend}, indent=2) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
