"""A local forwarder: listen on 127.0.0.1:ephemeral, pipe each connection into a new channel.

Each accepted connection gets its own channel to (dest_host, dest_port), opened by the
callable the forwarder was given (for SSH: a direct-tcpip channel from the jump host). If the
channel cannot be opened, the accepted connection is closed and the failure is kept under
the client's port, so a caller can ask `wait_channel(client_port)` and get the real reason
instead of a bare end-of-file.

    with LocalForward(jump.open_channel, "198.51.100.10", 25, label="ssh://u@jump") as fwd:
        smtplib.SMTP(fwd.host, fwd.port)

Threads: one acceptor, one pump per connection; all stop (bounded) when the forwarder closes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from relayguard.vantage.errors import ChannelOpenFailed

BUFFER = 32768
POLL_SECONDS = 0.2
MAX_REMEMBERED = 1024  # channel outcomes kept for wait_channel()
JOIN_SECONDS = 5.0


class Channel(Protocol):
    """What the forwarder needs from a channel (paramiko.Channel has all of it)."""

    def recv(self, nbytes: int) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...


# (dest_host, dest_port, origin address) -> an open channel, or raises ChannelOpenFailed
ChannelFactory = Callable[[str, int, tuple[str, int]], Channel]


class LocalForward:
    """Context manager: a listener on `bind_host`:ephemeral forwarding to dest via channels."""

    def __init__(
        self,
        open_channel: ChannelFactory,
        dest_host: str,
        dest_port: int,
        *,
        label: str = "vantage",
        bind_host: str = "127.0.0.1",
    ) -> None:
        self._open_channel = open_channel
        self.dest_host = dest_host
        self.dest_port = dest_port
        self.label = label
        self._bind_host = bind_host
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._live: set[socket.socket] = set()
        self._live_channels: set[Channel] = set()
        self._lock = threading.Lock()
        self._outcomes: OrderedDict[int, ChannelOpenFailed | None] = OrderedDict()
        self._settled = threading.Condition(self._lock)
        self.failures: list[ChannelOpenFailed] = []
        self.connections = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> LocalForward:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((self._bind_host, 0))
            listener.listen(64)
            listener.settimeout(POLL_SECONDS)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        acceptor = threading.Thread(
            target=self._accept_loop, name=f"relayguard-forward-{self.port}", daemon=True
        )
        self._threads.append(acceptor)
        acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting, close every connection and channel, join the threads (bounded)."""
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            sockets = list(self._live)
            channels = list(self._live_channels)
            self._settled.notify_all()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for channel in channels:
            with contextlib.suppress(Exception):
                channel.close()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(JOIN_SECONDS)

    def __enter__(self) -> LocalForward:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- facts -------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("the forwarder is not started")
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def destination(self) -> str:
        host = f"[{self.dest_host}]" if ":" in self.dest_host else self.dest_host
        return f"{host}:{self.dest_port}"

    def wait_channel(self, client_port: int, timeout: float) -> None:
        """Wait until the connection from local `client_port` has its channel.

        Returns when the channel is open; raises ChannelOpenFailed with the reason when it
        could not be opened, or when no outcome came within `timeout` seconds.
        """
        with self._settled:
            settled = self._settled.wait_for(
                lambda: client_port in self._outcomes or self._stop.is_set(), timeout
            )
            if not settled:
                raise ChannelOpenFailed(
                    f"{self.label}: no channel to {self.destination} within {timeout:g}s"
                )
            if client_port not in self._outcomes:
                raise ChannelOpenFailed(f"{self.label}: the forwarder to {self.destination} closed")
            outcome = self._outcomes.pop(client_port)
        if outcome is not None:
            raise outcome

    # -- threads -----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            conn.settimeout(None)
            with self._lock:
                if self._stop.is_set():
                    conn.close()
                    return
                self._live.add(conn)
                self.connections += 1
            handler = threading.Thread(
                target=self._serve,
                args=(conn, (str(peer[0]), int(peer[1]))),
                name=f"relayguard-forward-{peer[1]}",
                daemon=True,
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(handler)
            handler.start()

    def _settle(self, client_port: int, outcome: ChannelOpenFailed | None) -> None:
        with self._settled:
            self._outcomes[client_port] = outcome
            while len(self._outcomes) > MAX_REMEMBERED:
                self._outcomes.popitem(last=False)
            if outcome is not None:
                self.failures.append(outcome)
                del self.failures[:-MAX_REMEMBERED]
            self._settled.notify_all()

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        channel: Channel | None = None
        try:
            try:
                channel = self._open_channel(self.dest_host, self.dest_port, peer)
            except ChannelOpenFailed as exc:
                self._settle(peer[1], exc)
                return
            except Exception as exc:  # a channel factory's unexpected error: still a reason
                self._settle(
                    peer[1],
                    ChannelOpenFailed(
                        f"{self.label}: channel to {self.destination} failed: "
                        f"{type(exc).__name__}: {exc}"
                    ),
                )
                return
            with self._lock:
                self._live_channels.add(channel)
            self._settle(peer[1], None)
            _pump(conn, channel, self._stop)
        finally:
            with self._lock:
                self._live.discard(conn)
                if channel is not None:
                    self._live_channels.discard(channel)
            with contextlib.suppress(OSError):
                conn.close()
            if channel is not None:
                with contextlib.suppress(Exception):
                    channel.close()


def _pump(sock: socket.socket, channel: Channel, stop: threading.Event) -> None:
    """Copy bytes both ways until both sides reached end-of-file (half-close passed on)."""
    sock_open = True
    channel_open = True
    try:
        while (sock_open or channel_open) and not stop.is_set():
            watched: list[socket.socket | Channel] = []
            if sock_open:
                watched.append(sock)
            if channel_open:
                watched.append(channel)
            readable, _, _ = select.select(watched, [], [], POLL_SECONDS)
            for source in readable:
                if source is sock:
                    data = sock.recv(BUFFER)
                    if data:
                        channel.sendall(data)
                    else:
                        sock_open = False
                        with contextlib.suppress(Exception):
                            channel.shutdown_write()
                else:
                    data = channel.recv(BUFFER)
                    if data:
                        sock.sendall(data)
                    else:
                        channel_open = False
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
    except Exception:  # OSError from the socket; SSHException/EOFError from a dying transport
        return  # the caller closes both ends
