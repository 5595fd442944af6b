#!/usr/bin/env python3
"""The gRPC chat API from Python: one answer, then a stream.

    .venv/bin/python examples/grpc_chat.py YOUR_STEPBLEND_JWT [--data-dir DIR | --address HOST:PORT]
    ./examples/grpc_chat.py YOUR_STEPBLEND_JWT ...     (the same, through the project's .venv)

The address is the gateway's chat port: `chat` in the services.json of the data dir
of a running `stepblend up` (--data-dir, else STEPBLEND_DATA_DIR, else .stepblend), or
given with --address (50060 on the gateway Service in Kubernetes).
"""

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

try:
    import grpc

    from stepblend.v1 import chat_pb2, chat_pb2_grpc
except ImportError as missing:
    # Run by a Python without the project installed: use the project's venv when there is one.
    VENV_PYTHON = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
    if VENV_PYTHON.exists() and Path(sys.executable).resolve() != VENV_PYTHON.resolve():
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])
    raise SystemExit(
        "grpc_chat.py needs the project's venv: run `python3 dev.py up` once, then .venv/bin/python"
    ) from missing


async def main(token: str, address: str) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    request = chat_pb2.ChatRequest(model="lowest-cost", messages=[chat_pb2.ChatMessage(role="user", content="Hello!")])
    async with grpc.aio.insecure_channel(address) as channel:
        chat = chat_pb2_grpc.ChatStub(channel)
        answer = await chat.Complete(request, metadata=metadata)
        print(answer.choices[0].message.content)
        print(answer.stepblend.routed_model, answer.stepblend.provider, answer.stepblend.actual_cost_usd)
        async for chunk in chat.CompleteStream(request, metadata=metadata):
            for choice in chunk.choices:
                print(choice.delta.content, end="", flush=True)
        print()


def chat_address(data_dir: Path) -> str:
    services = data_dir / "services.json"
    if not services.exists():
        raise SystemExit(
            f"No running StepBlend found: {services} is missing. Pass --data-dir DIR (the one `stepblend up` uses) "
            "or --address HOST:PORT."
        )
    return str(json.loads(services.read_text())["chat"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Call StepBlend's gRPC chat API: one answer, then a stream.")
    parser.add_argument("token", help="your StepBlend JWT")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, help="data dir of a running `stepblend up`")
    where.add_argument("--address", help="the gateway's chat port, HOST:PORT")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(os.environ.get("STEPBLEND_DATA_DIR") or ".stepblend")
    asyncio.run(main(args.token, args.address or chat_address(data_dir)))
