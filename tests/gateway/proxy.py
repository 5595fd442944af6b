"""A TCP proxy in front of a gRPC server that can hold the server's answers: real
bytes on a real connection, delayed, to open a race window on purpose.

`hold()` queues what the server sends; `answer_held` is set once a whole HTTP/2
DATA frame of a call's response is queued (so the server has answered);
`release()` sends everything queued and stops holding.
"""

from __future__ import annotations

import asyncio
import contextlib

_FRAME_HEADER = 9
_DATA = 0


class HoldingProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._holding = False
        self._held: list[tuple[asyncio.StreamWriter, bytes]] = []
        self.answer_held = asyncio.Event()
        self.port = 0

    async def start(self) -> HoldingProxy:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def hold(self) -> None:
        self._holding = True
        self.answer_held.clear()

    def release(self) -> None:
        self._holding = False
        for writer, data in self._held:
            writer.write(data)
        self._held.clear()

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        await asyncio.gather(self._pipe(client_r, server_w), self._answers(server_r, client_w))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server to client, frame by frame (a server sends no preface, only frames)."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                header = await reader.readexactly(_FRAME_HEADER)
                payload = await reader.readexactly(int.from_bytes(header[:3], "big"))
                frame = header + payload
                if self._holding:
                    self._held.append((writer, frame))
                    stream_id = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                    if header[3] == _DATA and stream_id:
                        self.answer_held.set()
                else:
                    writer.write(frame)
                    await writer.drain()
        writer.close()
