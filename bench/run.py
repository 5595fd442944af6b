"""StepBlend's overhead against a direct call to the provider, in one command:

    python bench/run.py                    # about two minutes
    python bench/run.py --against litellm  # and LiteLLM Proxy's, side by side (about five)

Starts a microsecond mock provider and `stepblend up --workers 1` (the whole tree:
gateway, router, providers, billing, nats-server; `--workers N` for more) pinned to
core 0, and drives load from core 1 (the sequential Python client, wrk for
concurrency, the mock). Each figure is StepBlend minus a direct call to the mock
with the same client. The account is on an unlimited plan, so admission is
exercised on every request but never refuses. With `--against litellm`, LiteLLM
Proxy (bench/litellm_proxy.py: its own venv, one worker, no database) is measured
the same way afterwards, on the same core, against the same mock. Prints one table;
`--json FILE` also writes the figures, each side's under its name.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STEPBLEND_CORE = "0"
LOAD_CORE = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The only STEPBLEND_ variables passed on to the system measured: the switches that turn
# the request path's newer designs off, to measure before and after in one checkout
# (`STEPBLEND_LEASES=false STEPBLEND_CALL_STREAMS=false python bench/run.py`).
DESIGN_SWITCHES = frozenset({"STEPBLEND_LEASES", "STEPBLEND_CALL_STREAMS"})

# Issue 20's targets: (figure, bound, whether the figure must stay under it).
TARGETS = {
    "cpu_ms_per_request": (1.8, True),
    "seq_added_p50_ms": (2.0, True),
    "seq_added_p99_ms": (5.0, True),
    "added_ttft_ms": (2.0, True),
    "rps_at_64": (550.0, False),
    "errors_at_64": (0.0, True),
    "rss_mb_total": (420.0, True),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def body(stream: bool, chunks: int = 20, paced: bool = False) -> bytes:
    """A request; `paced`: the mock sends a stream's events one write at a time (fastmock.py)."""
    request: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
    if stream:
        request.update(stream=True, max_tokens=chunks)
    if paced:
        request["user"] = "paced"
    return json.dumps(request, separators=(",", ":")).encode()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Target:
    """Where requests go: StepBlend's gateway or the mock directly."""

    def __init__(self, port: int, path: str, token: str = "") -> None:
        self.port, self.path = port, path
        self.headers = {"content-type": "application/json"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"

    def sequential(self, payload: bytes, n: int, first_byte: bool = False) -> list[float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            conn.request("POST", self.path, payload, self.headers)
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {response.read()[:300]!r}")
            if first_byte:
                while not response.readline().startswith(b"data: {"):
                    pass
                times.append(time.perf_counter() - start)
                response.read()
            else:
                response.read()
                times.append(time.perf_counter() - start)
        conn.close()
        return [t * 1000 for t in times]

    def wrk(self, payload: bytes, connections: int, seconds: int) -> dict[str, float]:
        env = dict(os.environ, BENCH_BODY=payload.decode(), BENCH_TOKEN=self.headers.get("authorization", "")[7:])
        out = subprocess.run(
            [
                "taskset",
                "-c",
                LOAD_CORE,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(ROOT / "bench" / "post.lua"),
                f"http://127.0.0.1:{self.port}{self.path}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms(latency["50"]),
        "p99_ms": ms(latency["99"]),
        "requests": requests,
        "errors": errors,
    }


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def process_name(argv: list[bytes]) -> str:
    """What a process of the tree is: a service's name (several workers share it),
    the supervisor, litellm, or the executable's name (nats-server)."""
    if b"serve" in argv:
        return argv[argv.index(b"serve") + 1].decode()
    if b"stepblend" in argv and b"up" in argv:
        return "supervisor"
    if any(arg.endswith(b"/litellm") for arg in argv):
        return "litellm"
    return Path(argv[0].decode()).name


def cpu_by_process(pids: list[int]) -> dict[str, float]:
    """CPU seconds so far of each process, named by what it runs."""
    found: dict[str, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = process_name(argv)
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_by_process(pids).values())


def quiesce(pids: list[int], timeout: float = 15.0) -> None:
    """Wait until the tree is idle: the usage events of the last run settled and
    folded (billing and the router work through them after the responses), so that
    CPU measured across a run includes the work each request leaves behind."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pids)
        time.sleep(0.5)
        if cpu_seconds(pids) - before < 0.02:  # under 4% of a core: heartbeats only
            return


def rss_by_process(pids: list[int], field: str) -> dict[str, float]:
    """`field` of /proc/PID/status (VmRSS now, VmHWM the peak) or, for Pss, of
    /proc/PID/smaps_rollup in MB, by process name. Pss counts a page shared by k
    processes as 1/k in each (forked gateway workers share their token tables),
    where RSS counts it whole in every one of them."""
    found: dict[str, float] = {}
    source = "smaps_rollup" if field == "Pss" else "status"
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/{source}").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(field + ":"):
                name = process_name(argv)
                found[name] = found.get(name, 0.0) + int(line.split()[1]) / 1024
    return found


def rss_mb(pids: list[int], field: str) -> float:
    return sum(rss_by_process(pids, field).values())


class TreePeak(threading.Thread):
    """The tree's peak: the largest sum of its processes' RSS, and of their Pss, at
    one moment, sampled every 0.1 s (the sum of each process's own peak, VmHWM, can
    only be larger)."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak_mb, self.peak_pss_mb = pids, 0.0, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak_mb = max(self.peak_mb, rss_mb(self.pids, "VmRSS"))
            self.peak_pss_mb = max(self.peak_pss_mb, rss_mb(self.pids, "Pss"))

    def stop(self) -> tuple[float, float]:
        self.done.set()
        self.join()
        return self.peak_mb, self.peak_pss_mb


def profile(pids: list[int], folder: str, seconds: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on every service process for the length of one run."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    spies = []
    for pid in pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"serve" not in argv:
            continue
        name = process_name(argv)
        if (Path(folder) / f"{name}.txt").exists():  # a second worker of the same service
            name = f"{name}-{pid}"
        spies.append(
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(seconds),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(Path(folder) / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return spies


def start_mock() -> tuple[subprocess.Popen[bytes], int]:
    mock_port = free_port()
    mock = subprocess.Popen(
        ["taskset", "-c", LOAD_CORE, sys.executable, str(ROOT / "bench" / "fastmock.py"), "--port", str(mock_port)]
    )
    wait_port(mock_port)
    return mock, mock_port


def start_stepblend(data_dir: Path, mock_port: int, workers: int = 1) -> tuple[subprocess.Popen[bytes], int, str]:
    """`stepblend up` on core 0 with an unlimited account whose OpenAI key reaches the mock."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_") or k in DESIGN_SWITCHES}
    env.update(STEPBLEND_DATA_DIR=str(data_dir), STEPBLEND_OPENAI_BASE_URL=f"http://127.0.0.1:{mock_port}/v1")
    up = subprocess.Popen(
        [
            *("taskset", "-c", STEPBLEND_CORE, sys.executable, "-m", "stepblend", "up"),
            *("--port", str(port), "--workers", str(workers)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (data_dir / "services.json").exists():
        if up.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("stepblend up did not start; see " + str(data_dir / "logs"))
        time.sleep(0.1)
    cli = [sys.executable, "-m", "stepblend"]
    token = subprocess.run(
        [*cli, "account", "create", "bench@example.com", "--plan", "enterprise"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [*cli, "keys", "set", "bench@example.com", "openai", "sk-bench-000000000000"],
        env=env,
        capture_output=True,
        check=True,
    )
    return up, port, token


def start(data_dir: Path, workers: int = 1) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], int, int, str]:
    mock, mock_port = start_mock()
    up, port, token = start_stepblend(data_dir, mock_port, workers)
    return up, mock, port, mock_port, token


def launch(
    prefix: str, workers: int = 1
) -> tuple[Path, tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], int, int, str]]:
    """This process onto the load core, then `start` in a new data dir; wrk must be there."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    return data_dir, start(data_dir, workers)


def stop_stepblend(up: subprocess.Popen[bytes]) -> None:
    """Stop `stepblend up` (gracefully, then hard)."""
    up.send_signal(signal.SIGINT)
    try:
        up.wait(40)
    except subprocess.TimeoutExpired:
        up.kill()


def stop(up: subprocess.Popen[bytes], mock: subprocess.Popen[bytes], data_dir: Path) -> None:
    """Stop `stepblend up` and the mock; remove the data dir."""
    stop_stepblend(up)
    mock.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


def measure(
    target: Target, direct: Target, pids: list[int], seconds: int, requests: int, spy: str | None
) -> dict[str, float]:
    """Every figure of one side (StepBlend or LiteLLM) whose process tree is `pids`."""
    results: dict[str, float] = {}
    peak = TreePeak(pids)
    peak.start()
    plain, streamed, streamed_one = body(False), body(True, 20), body(True, 1)
    target.sequential(plain, 300)  # warm-up: caches, channels, JIT-free but lazy imports
    direct.sequential(plain, 300)

    quiesce(pids)
    before_seq = cpu_by_process(pids)
    g = target.sequential(plain, requests)
    quiesce(pids)
    after_seq = cpu_by_process(pids)
    cpu_seq = (sum(after_seq.values()) - sum(before_seq.values())) * 1000 / requests
    for name, value in after_seq.items():
        results[f"cpu_ms_per_request_sequential[{name}]"] = (value - before_seq.get(name, 0.0)) * 1000 / requests
    d = direct.sequential(plain, requests)
    results["seq_added_p50_ms"] = statistics.median(g) - statistics.median(d)
    results["seq_added_p99_ms"] = percentile(g, 99) - percentile(d, 99)
    g, d = target.sequential(streamed, requests // 2, True), direct.sequential(streamed, requests // 2, True)
    results["added_ttft_ms"] = statistics.median(g) - statistics.median(d)

    cpu_at, cpu_each = {}, {}
    for connections in (16, 64):
        quiesce(pids)
        before_each = cpu_by_process(pids)
        spies = profile(pids, spy, seconds) if spy and connections == 16 else []
        run = target.wrk(plain, connections, seconds)
        for one in spies:
            one.wait()
        quiesce(pids)
        served = max(1, run["requests"] - run["errors"])
        after_each = cpu_by_process(pids)
        cpu_at[connections] = (sum(after_each.values()) - sum(before_each.values())) * 1000 / served
        if connections == 64:
            cpu_each = {
                name: (value - before_each.get(name, 0.0)) * 1000 / served for name, value in after_each.items()
            }
        results[f"rps_at_{connections}"] = run["rps"]
        results[f"p50_ms_at_{connections}"] = run["p50_ms"]
        results[f"p99_ms_at_{connections}"] = run["p99_ms"]
        results[f"errors_at_{connections}"] = run["errors"]
        results[f"direct_rps_at_{connections}"] = direct.wrk(plain, connections, max(3, seconds // 3))["rps"]
    # Issue 20's measure: the larger of sequential and 64 connections.
    results["cpu_ms_per_request"] = max(cpu_seq, cpu_at[64])
    results["cpu_ms_per_request_sequential"] = cpu_seq
    results["cpu_ms_per_request_at_16"] = cpu_at[16]
    results["cpu_ms_per_request_at_64"] = cpu_at[64]
    results.update({f"cpu_ms_per_request_at_64[{name}]": value for name, value in cpu_each.items()})

    # CPU per chunk: a 50-chunk stream against a 1-chunk one, per extra chunk. Paced,
    # each chunk reaches the server in a read of its own, as from a real provider;
    # batched, all arrive in one read (the best case: one gRPC message, one SSE write).
    per_stream = {}
    for name, payload in (
        ("paced_50", body(True, 50, paced=True)),
        ("paced_1", body(True, 1, paced=True)),
        ("batched_50", body(True, 50)),
        ("batched_1", streamed_one),
    ):
        quiesce(pids)
        before = cpu_seconds(pids)
        run = target.wrk(payload, 16, seconds)
        quiesce(pids)
        per_stream[name] = (cpu_seconds(pids) - before) / max(1, run["requests"] - run["errors"])
        results[f"errors_stream_{name}"] = run["errors"]
    results["cpu_us_per_chunk"] = (per_stream["paced_50"] - per_stream["paced_1"]) / 49 * 1e6
    results["cpu_us_per_chunk_batched"] = (per_stream["batched_50"] - per_stream["batched_1"]) / 49 * 1e6
    results["rss_mb_tree_peak"], results["pss_mb_tree_peak"] = peak.stop()
    results["rss_mb_total"] = rss_mb(pids, "VmHWM")
    for name, value in rss_by_process(pids, "VmHWM").items():
        results[f"rss_mb_peak[{name}]"] = value
    results["rss_mb_now"] = rss_mb(pids, "VmRSS")
    for name, value in rss_by_process(pids, "Pss").items():
        results[f"pss_mb_now[{name}]"] = value
    return results


def measure_litellm(mock_port: int, seconds: int, requests: int) -> dict[str, float]:
    # bench/litellm_proxy.py, beside this file (this script's folder leads sys.path).
    import litellm_proxy

    folder = Path(tempfile.mkdtemp(prefix="litellm-bench-"))
    port = free_port()
    proxy = litellm_proxy.start(folder, mock_port, port, STEPBLEND_CORE)
    try:
        target = Target(port, "/chat/completions", litellm_proxy.MASTER_KEY)
        direct = Target(mock_port, "/v1/chat/completions")
        return measure(target, direct, tree(proxy.pid), seconds, requests, None)
    finally:
        litellm_proxy.stop(proxy)
        shutil.rmtree(folder, ignore_errors=True)


def table(sides: dict[str, dict[str, float]]) -> str:
    """One row per figure, one column per side; `met` is StepBlend's against its target."""
    names = list(dict.fromkeys(name for results in sides.values() for name in results))
    # A side's own processes (litellm) beside the other's, under the same figure.
    bases = list(dict.fromkeys(name.split("[")[0] for name in names))
    names.sort(key=lambda name: bases.index(name.split("[")[0]))
    lines = [f"{'figure':<40}" + "".join(f"{side:>12}" for side in sides) + f"{'target':>10}  met"]
    for name in names:
        target = TARGETS.get(name)
        value = sides["StepBlend"].get(name)
        met = ""
        if target is not None and value is not None:
            bound, upper = target
            met = "yes" if (value <= bound if upper else value >= bound) else "NO"
        cells = "".join(f"{'' if side.get(name) is None else f'{side[name]:.3f}':>12}" for side in sides.values())
        bound_text = "" if target is None else ("≤ " if target[1] else "≥ ") + f"{target[0]:g}"
        lines.append(f"{name:<40}{cells}{bound_text:>10}  {met}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per side")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--profile", help="record py-spy profiles of every service during the 16-connection run into DIR"
    )
    parser.add_argument("--workers", type=int, default=1, help="stepblend up --workers (1)")
    parser.add_argument("--against", choices=["litellm"], help="also measure LiteLLM Proxy, side by side")
    args = parser.parse_args()
    data_dir, (up, mock, port, mock_port, token) = launch("stepblend-bench-", args.workers)
    sides: dict[str, dict[str, float]] = {}
    try:
        gateway = Target(port, "/api/v1/chat/completions", token)
        direct = Target(mock_port, "/v1/chat/completions")
        sides["StepBlend"] = measure(gateway, direct, tree(up.pid), args.seconds, args.requests, args.profile)
        stop_stepblend(up)  # off the core before the other side runs
        if args.against == "litellm":
            sides["LiteLLM"] = measure_litellm(mock_port, args.seconds, args.requests)
    finally:
        stop(up, mock, data_dir)

    print(table(sides))
    if args.json:
        figures = {side.lower(): results for side, results in sides.items()}
        Path(args.json).write_text(json.dumps({"workers": args.workers, **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
