"""LocalForward pipes each accepted connection into its own channel and keeps the reason
when a channel cannot be opened (no SSH here: the channel is a plain TCP connection)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from relayguard.vantage import ChannelOpenFailed, LocalForward

TIMEOUT = 10.0


class SocketChannel:
    """A channel made of a TCP socket (what paramiko.Channel offers, minus SSH)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, nbytes: int) -> bytes:
        return self.sock.recv(nbytes)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.fixture
def upper_server() -> Iterator[tuple[str, int]]:
    """Answers each connection with its whole input upper-cased, after the client's EOF."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(TIMEOUT)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[:2]
    stop.set()
    server.close()
    thread.join(TIMEOUT)


def tcp_channel(host: str, port: int, origin: tuple[str, int]) -> SocketChannel:
    try:
        return SocketChannel(socket.create_connection((host, port), timeout=TIMEOUT))
    except OSError as exc:
        raise ChannelOpenFailed(f"test channel to {host}:{port} failed: {exc}") from None


def test_bytes_flow_both_ways_and_half_close_is_passed_on(upper_server: tuple[str, int]) -> None:
    host, port = upper_server
    with LocalForward(tcp_channel, host, port, label="test") as forward:
        assert forward.host == "127.0.0.1" and forward.port != port
        payload = b"helo relayguard\r\n" * 5000  # larger than one buffer
        for _ in range(3):  # each connection gets its own channel
            with socket.create_connection(forward.address, timeout=TIMEOUT) as client:
                forward.wait_channel(client.getsockname()[1], TIMEOUT)
                client.sendall(payload)
                client.shutdown(socket.SHUT_WR)
                received = b""
                while chunk := client.recv(65536):
                    received += chunk
            assert received == payload.upper()
        assert forward.connections == 3
        assert forward.failures == []


def test_a_channel_failure_is_reported_for_that_connection() -> None:
    unused = socket.create_server(("127.0.0.1", 0))
    host, port = unused.getsockname()[:2]
    unused.close()  # nothing listens there any more
    with LocalForward(tcp_channel, host, port, label="ssh://u@jump") as forward:
        with socket.create_connection(forward.address, timeout=TIMEOUT) as client:
            with pytest.raises(ChannelOpenFailed, match="refused"):
                forward.wait_channel(client.getsockname()[1], TIMEOUT)
            assert client.recv(1) == b""  # and the local connection was closed
        assert len(forward.failures) == 1


def test_an_unexpected_factory_error_becomes_a_channel_failure() -> None:
    def broken(host: str, port: int, origin: tuple[str, int]) -> SocketChannel:
        raise RuntimeError("transport went away")

    with (
        LocalForward(broken, "192.0.2.1", 25, label="ssh://u@jump") as forward,
        socket.create_connection(forward.address, timeout=TIMEOUT) as client,
        pytest.raises(ChannelOpenFailed, match="RuntimeError: transport went away"),
    ):
        forward.wait_channel(client.getsockname()[1], TIMEOUT)


def test_waiting_for_a_connection_that_never_came_is_bounded() -> None:
    with (
        LocalForward(tcp_channel, "127.0.0.1", 9, label="t") as forward,
        pytest.raises(ChannelOpenFailed, match="no channel"),
    ):
        forward.wait_channel(1, 0.2)


def test_close_ends_live_connections_and_stops_listening(upper_server: tuple[str, int]) -> None:
    host, port = upper_server
    forward = LocalForward(tcp_channel, host, port).start()
    address = forward.address
    client = socket.create_connection(address, timeout=TIMEOUT)
    forward.wait_channel(client.getsockname()[1], TIMEOUT)
    forward.close()
    assert client.recv(1) == b""
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=TIMEOUT).close()
