"""One SMTP connection: send a command, read its reply, within time and size bounds.

The only I/O room of the probe. It knows nothing about relay tests: the runner decides what
to send, `judge` decides what the replies mean. Every line sent and received goes into the
host's transcript (bounded), which is the evidence the reports show.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from relayguard.probe.reply import ProtocolError, Reply, ReplyParser, ReplyTooLong

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# How a connection is opened: directly (optionally from a source address) or through a vantage.
Opener = Callable[[str, int], Awaitable[Streams]]

READ_CHUNK = 4096
MAX_TRANSCRIPT = 4000
MAX_TRANSCRIPT_LINE = 512


class SessionError(Exception):
    """The dialogue with this connection cannot go on; `str()` is a reason for humans."""


class ConnectFailed(SessionError):
    """No TCP connection could be made."""


class ConnectionLost(SessionError):
    """The server closed or reset the connection."""


class ReplyTimeout(SessionError):
    """No complete reply within the command time bound."""


class NotSmtp(SessionError):
    """The peer does not speak SMTP."""


class ReplyOversized(NotSmtp):
    """A reply too long to read even by draining it (reply.MAX_DRAIN_BYTES, MAX_LINE_BYTES)."""


@dataclass
class Transcript:
    """What was said on every connection to one host, bounded in lines and line length."""

    entries: list[tuple[str, str]] = field(default_factory=list)
    dropped: int = 0

    def add(self, who: str, text: str) -> None:
        for line in text.splitlines() or [""]:
            if len(self.entries) >= MAX_TRANSCRIPT:
                self.dropped += 1
                continue
            if len(line) > MAX_TRANSCRIPT_LINE:
                line = line[:MAX_TRANSCRIPT_LINE] + f"… ({len(line)} chars)"
            self.entries.append((who, line))


def direct_opener(source_address: str | None, connect_timeout: float) -> Opener:
    """Open TCP connections from this machine, bound to `source_address` when given."""

    async def open_direct(host: str, port: int) -> Streams:
        local = (source_address, 0) if source_address else None
        try:
            async with asyncio.timeout(connect_timeout):
                return await asyncio.open_connection(
                    host, port, local_addr=local, limit=READ_CHUNK * 4
                )
        except TimeoutError as exc:
            raise ConnectFailed(f"connect to {host}:{port} timed out") from exc
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectFailed(f"connect to {host}:{port} failed: {reason}") from exc

    return open_direct


class SmtpConnection:
    """An open SMTP connection with a reply queue (replies may arrive ahead of reads)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        reply_timeout: float,
        transcript: Transcript,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = reply_timeout
        self._transcript = transcript
        self._parser = ReplyParser()
        self._ready: deque[Reply] = deque()
        self.in_transaction = False
        self.pipelining = False  # the server advertised PIPELINING and we may use it
        self.starttls_offered = False  # the last EHLO reply listed STARTTLS
        self.tls = False  # the connection is encrypted (STARTTLS or implicit TLS)
        self.closed = False
        # Called once a reply has been awaited `slow_after` seconds without arriving (a
        # tarpit), while the wait goes on: the runner opens more connections at that moment
        # instead of after the slow reply.
        self.on_slow: Callable[[], None] | None = None
        self.slow_after = 1.0

    async def read_reply(self) -> Reply:
        if self._ready:  # arrived together with an earlier reply (pipelining, 554 + 421)
            return self._record(self._ready.popleft())
        overdue = (
            asyncio.get_running_loop().call_later(self.slow_after, self.on_slow)
            if self.on_slow is not None
            else None
        )
        try:
            async with asyncio.timeout(self._timeout):
                self._parser.feed(b"")  # raises an error met after the last reply handed out
                while not self._ready:
                    data = await self._reader.read(READ_CHUNK)
                    if not data:
                        self.closed = True
                        raise ConnectionLost("server closed the connection")
                    self._ready.extend(self._parser.feed(data))
        except TimeoutError as exc:
            raise ReplyTimeout(f"no complete reply within {self._timeout:g}s") from exc
        except ReplyTooLong as exc:
            raise ReplyOversized(str(exc)) from exc
        except ProtocolError as exc:
            raise NotSmtp(str(exc)) from exc
        except (ConnectionError, OSError) as exc:
            self.closed = True
            raise ConnectionLost(f"connection lost: {exc.strerror or exc}") from exc
        finally:
            if overdue is not None:
                overdue.cancel()
        return self._record(self._ready.popleft())

    def _record(self, reply: Reply) -> Reply:
        self._transcript.add("S", reply.render())
        if reply.dropped:
            self._transcript.add("*", f"{reply.dropped} more lines of this reply read, not kept")
        return reply

    def queued(self) -> Reply | None:
        """A complete reply already read that no command has asked for yet, if any: an
        early talker, more replies than commands under PIPELINING, or a 421 that came in the
        same segment as the previous reply (RFC 5321 §3.8)."""
        return self._ready[0] if self._ready else None

    def take_queued(self) -> Reply:
        """Remove the queued reply (recording it in the transcript) and return it."""
        return self._record(self._ready.popleft())

    async def send(self, *lines: str) -> None:
        """Send one or more command lines in a single write (RFC 2920 pipelining when many)."""
        payload = bytearray()
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("an SMTP command line must not contain CR or LF")
            self._transcript.add("C", line)
            payload.extend(line.encode("ascii", errors="strict") + b"\r\n")
        try:
            self._writer.write(bytes(payload))
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise ReplyTimeout(f"could not send within {self._timeout:g}s") from exc
        except (ConnectionError, OSError) as exc:
            self.closed = True
            raise ConnectionLost(f"connection lost while sending: {exc}") from exc

    async def command(self, line: str) -> Reply:
        await self.send(line)
        return await self.read_reply()

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """Upgrade after a 220 to STARTTLS, or before the banner on an implicit-TLS port;
        plaintext buffered before the upgrade is discarded (the STARTTLS command-injection
        flaw, CVE-2011-0411, comes from keeping it)."""
        self._ready.clear()
        self._parser = ReplyParser()
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.start_tls(context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self.closed = True
            raise ReplyTimeout("TLS handshake timed out") from exc
        self.tls = True
        self._transcript.add("*", "TLS established")

    def peer_certificate(self) -> bytes | None:
        ssl_object = self._writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        return der

    async def close(self, polite: bool = True) -> None:
        if polite and not self.closed:
            try:
                await self.send("QUIT")
                await self.read_reply()
            except SessionError:
                pass
        self.closed = True
        self._writer.close()
        try:
            async with asyncio.timeout(2):
                await self._writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            pass
