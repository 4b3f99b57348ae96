"""Small scripted SMTP servers for protocol edge-case tests (loopback only).

A `ScriptedServer` runs an asyncio server in a background thread. Its behaviour is a
`Script`: the banner bytes, and a function from (session state, command line) to reply
bytes (or None to close the connection). Writes can be split into chunks to emulate
replies that arrive across TCP segments.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Session:
    peer: str
    errors: int = 0
    commands: list[str] = field(default_factory=list)
    mail: bool = False
    data: dict[str, object] = field(default_factory=dict)


Handler = Callable[[Session, str], bytes | None]


@dataclass
class Script:
    handler: Handler
    banner: bytes | None = b"220 mx.test.example ESMTP scripted\r\n"
    chunk: int = 0  # >0: write replies in chunks of this many bytes
    chunk_delay: float = 0.0
    silent: bool = False  # accept the connection and never speak
    error_delay: float = 0.0  # a tarpit: seconds before every 4xx/5xx reply
    max_connections: int = 0  # >0: a connection beyond this many at once gets 421 and closes
    # STARTTLS: a handler reply starting with b"220" to a STARTTLS command upgrades with this
    tls: ssl.SSLContext | None = None


@dataclass
class Stats:
    connections: int = 0
    concurrent: int = 0
    max_concurrent: int = 0
    turned_away: int = 0
    commands: list[str] = field(default_factory=list)
    # In the order they happened: ("connect", n) when connection n is accepted, ("delayed", n)
    # when a reply held back by `error_delay` is written on connection n (tests count these,
    # they never time them).
    events: list[tuple[str, int]] = field(default_factory=list)


class ScriptedServer:
    def __init__(self, script: Script, host: str = "127.0.2.1", port: int = 0) -> None:
        self.script = script
        self.host = host
        self.port = port
        self.stats = Stats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self.script.chunk <= 0:
            writer.write(data)
        else:
            for i in range(0, len(data), self.script.chunk):
                writer.write(data[i : i + self.script.chunk])
                await writer.drain()
                await asyncio.sleep(self.script.chunk_delay)
        await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        number = self.stats.connections
        self.stats.events.append(("connect", number))
        self.stats.concurrent += 1
        self.stats.max_concurrent = max(self.stats.max_concurrent, self.stats.concurrent)
        session = Session(peer=str(writer.get_extra_info("peername")[0]))
        try:
            if self.script.max_connections and self.stats.concurrent > self.script.max_connections:
                self.stats.turned_away += 1
                await self._write(writer, b"421 4.7.0 Too many connections from your host\r\n")
                return
            if self.script.silent:
                await reader.read()
                return
            if self.script.banner is not None:
                await self._write(writer, self.script.banner)
            while True:
                line = await reader.readline()
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                session.commands.append(text)
                self.stats.commands.append(text)
                reply = self.script.handler(session, text)
                if reply is None:
                    return
                delayed = bool(self.script.error_delay) and reply[:1] in (b"4", b"5")
                if delayed:
                    await asyncio.sleep(self.script.error_delay)
                await self._write(writer, reply)
                if delayed:
                    self.stats.events.append(("delayed", number))
                if text.upper() == "STARTTLS" and reply.startswith(b"220") and self.script.tls:
                    await writer.start_tls(self.script.tls)
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self.stats.concurrent -= 1
            writer.close()

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, self.port), self._loop
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
        """`host:port`, an IPv6 address in brackets (`[::1]:port`), as relayguard writes it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def relay_policy(
    open_relay: bool,
    local_domains: tuple[str, ...] = ("test.example",),
    mailboxes: tuple[str, ...] = ("postmaster",),
) -> Handler:
    """A well-behaved ESMTP server: relays for everyone when open, else refuses foreign RCPT
    and accepts only its own mailboxes in its local domains."""

    def handle(session: Session, line: str) -> bytes | None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            return b"250-mx.test.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        if verb == "HELO":
            return b"250 mx.test.example\r\n"
        if verb == "RSET":
            session.mail = False
            return b"250 2.0.0 Ok\r\n"
        if verb == "MAIL":
            session.mail = True
            return b"250 2.1.0 Ok\r\n"
        if verb == "RCPT":
            if not session.mail:
                return b"503 5.5.1 Error: need MAIL command\r\n"
            address = line.split(":", 1)[1].strip().strip("<>").lower()
            domain = address.rsplit("@", 1)[-1]
            user = address.rsplit("@", 1)[0]
            simple = address.count("@") == 1 and not any(c in address for c in '%!:"')
            if open_relay or (simple and domain in local_domains and user in mailboxes):
                return b"250 2.1.5 Ok\r\n"
            session.errors += 1
            return b"554 5.7.1 Relay access denied\r\n"
        if verb == "QUIT":
            return b"221 2.0.0 Bye\r\n"
        if verb in {"VRFY", "EXPN", "ETRN"}:
            return b"502 5.5.1 Command not implemented\r\n"
        session.errors += 1
        return b"502 5.5.2 Error: command not recognized\r\n"

    return handle


@contextmanager
def serve(script: Script, host: str = "127.0.2.1") -> Iterator[ScriptedServer]:
    with ScriptedServer(script, host) as server:
        yield server
