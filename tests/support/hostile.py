"""Hostile SMTP servers for the hardening suite (loopback only).

A `RawServer` hands each accepted connection to an async behaviour `(reader, writer, stats)`
with full control of the bytes, their timing and the way the connection ends (a reset with
SO_LINGER 0, a TLS handshake broken on purpose, replies sent before the command…). It runs
its own event loop in a background thread and counts connections and command lines, so a
test can assert what the probe did (never DATA, never more than N connections at once).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class RawStats:
    connections: int = 0
    concurrent: int = 0
    max_concurrent: int = 0
    commands: list[str] = field(default_factory=list)


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, RawStats], Awaitable[None]]


class RawServer:
    def __init__(self, behaviour: Behaviour, host: str) -> None:
        self.behaviour = behaviour
        self.host = host
        self.port = 0
        self.stats = RawStats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self.stats.concurrent += 1
        self.stats.max_concurrent = max(self.stats.max_concurrent, self.stats.concurrent)
        try:
            await self.behaviour(reader, writer, self.stats)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.stats.concurrent -= 1
            writer.close()

    def __enter__(self) -> RawServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, 0), self._loop
        )
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# -- building blocks for behaviours ------------------------------------------------------------


async def command(reader: asyncio.StreamReader, stats: RawStats) -> str | None:
    """The next command line from the client, or None when it closed."""
    line = await reader.readline()
    if not line:
        return None
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    stats.commands.append(text)
    return text


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def stream(writer: asyncio.StreamWriter, unit: bytes, total: int) -> None:
    """Write `unit` repeatedly, `total` bytes in all, without holding them in memory."""
    sent = 0
    while sent < total:
        writer.write(unit)
        sent += len(unit)
        await writer.drain()


EHLO = b"250-mx.hostile.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


def closed_reply(line: str, state: dict[str, bool]) -> bytes:
    """What a well-behaved closed relay answers (the base most hostile servers bend)."""
    verb = line.split(" ", 1)[0].upper()
    if verb == "EHLO":
        return EHLO
    if verb == "HELO":
        return b"250 mx.hostile.example\r\n"
    if verb == "MAIL":
        state["mail"] = True
        return b"250 2.1.0 Ok\r\n"
    if verb == "RSET":
        state["mail"] = False
        return b"250 2.0.0 Ok\r\n"
    if verb == "RCPT":
        return b"554 5.7.1 Relay access denied\r\n" if state.get("mail") else b"503 5.5.1 MAIL\r\n"
    if verb == "QUIT":
        return b"221 2.0.0 Bye\r\n"
    return b"502 5.5.2 Not implemented\r\n"


Bend = Callable[[str, dict[str, bool], int], bytes | None]


def dialogue(bend: Bend, banner: bytes = b"220 mx.hostile.example ESMTP\r\n") -> Behaviour:
    """A closed relay whose reply to each command is `bend(line, state, n)` (n counts the
    commands of this connection); None from `bend` closes the connection."""

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, st: RawStats) -> None:
        writer.write(banner)
        await writer.drain()
        state: dict[str, bool] = {}
        n = 0
        while (line := await command(reader, st)) is not None:
            n += 1
            reply = bend(line, state, n)
            if reply is None:
                return
            writer.write(reply)
            await writer.drain()

    return run


def tarpit(delay: float) -> Behaviour:
    """A closed relay that waits `delay` seconds before every 4xx/5xx reply (Exchange's
    tarpit, stretched), and notices at once when the client gives up and closes, so its
    connection count is what the client really holds open."""

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, st: RawStats) -> None:
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        async def pump() -> None:
            while (line := await command(reader, st)) is not None:
                await lines.put(line)
            await lines.put(None)

        pumping = asyncio.get_running_loop().create_task(pump())
        closed = asyncio.get_running_loop().create_task(pumping_done(pumping))
        try:
            writer.write(b"220 mx.hostile.example ESMTP\r\n")
            state: dict[str, bool] = {}
            while (line := await lines.get()) is not None:
                reply = closed_reply(line, state)
                if reply[:1] in (b"4", b"5"):
                    await asyncio.wait({closed}, timeout=delay)
                    if closed.done():
                        return
                writer.write(reply)
                await writer.drain()
        finally:
            pumping.cancel()
            closed.cancel()

    return run


async def pumping_done(task: asyncio.Task[None]) -> None:
    """Completes when the client has closed (the pump read EOF)."""
    await asyncio.wait({task})
