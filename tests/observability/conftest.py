"""The real system with telemetry on: its own `stepblend up` (tests/support/system.py)
whose services export traces and metrics over OTLP/HTTP to a receiver in this test
process, plus the mock provider."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.observability import otlp
from tests.support.system import System, running_system


@dataclass
class Observed:
    system: System
    receiver: otlp.Receiver

    @property
    def mock_port(self) -> int:
        port = urlsplit(self.system.mock_url).port
        assert port is not None
        return port

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted((self.system.data_dir / "logs").glob("*.log")))


@pytest.fixture(scope="session")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    receiver, stop_receiver = otlp.serve()
    try:
        with running_system(
            Path(tmp_path_factory.mktemp("observed")),
            STEPBLEND_SSE_KEEPALIVE_SECONDS="1",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_METRIC_EXPORT_INTERVAL="500",
        ) as system:
            yield Observed(system, receiver)
    finally:
        stop_receiver()
