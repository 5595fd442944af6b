"""LiteLLM Proxy beside StepBlend in `bench/run.py --against litellm`.

LiteLLM is installed from the package registry (`litellm[proxy]`, pinned below) into
a venv of its own under the user's cache dir, never into the repository or the
project's venv, and reused by later runs. It runs as `run.py` runs StepBlend: one
worker, no database, pointed at the same mock, pinned to the same core, with a
master key so that every request is authenticated as StepBlend's are.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SPEC = "litellm[proxy]==1.108.7"
MASTER_KEY = "sk-litellm-bench-0000000000"
MODEL = "gpt-4o-mini"
START_TIMEOUT_S = 120.0


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stepblend-bench"


def installed(spec: str = SPEC) -> Path:
    """The `litellm` command of a venv holding `spec`, installed there first if need be."""
    venv = cache_dir() / "litellm-venv"
    marker = venv / "stepblend-bench-spec"
    command = venv / "bin" / "litellm"
    if command.exists() and marker.exists() and marker.read_text() == spec:
        return command
    print(f"installing {spec} into {venv} (once; a few minutes)", file=sys.stderr, flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec], check=True)
    marker.write_text(spec)
    return command


def write_config(folder: Path, mock_port: int) -> Path:
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{mock_port}/v1\n"
        "      api_key: sk-bench-000000000000\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    return config


def start(folder: Path, mock_port: int, port: int, core: str, spec: str = SPEC) -> subprocess.Popen[bytes]:
    """LiteLLM Proxy on `port`, pinned to `core`, ready to serve; its log in `folder`."""
    command = installed(spec)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPBLEND_", "DATABASE_URL"))}
    # The price map packaged with it (no fetch at start), and no per-request logging.
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    log = (folder / "litellm.log").open("ab")
    proxy = subprocess.Popen(
        [
            "taskset",
            "-c",
            core,
            str(command),
            "--config",
            str(write_config(folder, mock_port)),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proxy.poll() is not None:
            raise RuntimeError(f"LiteLLM exited with {proxy.returncode}; see {folder / 'litellm.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=1) as response:
                if response.status == 200:
                    return proxy
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop(proxy)
    raise RuntimeError(f"LiteLLM not ready after {START_TIMEOUT_S:.0f} s; see {folder / 'litellm.log'}")


def stop(proxy: subprocess.Popen[bytes]) -> None:
    proxy.send_signal(signal.SIGTERM)
    try:
        proxy.wait(30)
    except subprocess.TimeoutExpired:
        proxy.kill()
        proxy.wait()
