"""The gRPC chat API from Python: one answer, then a stream.

    .venv/bin/python examples/grpc_chat.py YOUR_STEPBLEND_JWT [HOST:PORT]

HOST:PORT is the gateway's chat port (`chat` in the data dir's services.json
under `stepblend up`; 50060 in Kubernetes).
"""

import asyncio
import json
import sys
from pathlib import Path

import grpc

from stepblend.v1 import chat_pb2, chat_pb2_grpc


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


if __name__ == "__main__":
    default = json.loads(Path(".stepblend/services.json").read_text())["chat"] if len(sys.argv) < 3 else sys.argv[2]
    asyncio.run(main(sys.argv[1], default))
