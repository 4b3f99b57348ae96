"""Fixtures of the lab tests: twins served on their own loopback address (127.0.50.x).

Addresses: twins 127.0.50.1-127.0.58.254, trusted clients 127.0.59.0/24, untrusted clients
127.0.60.0/24 (the lab fleet's allocation, docs/sources.md#decision-lab-addresses).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relayguard.lab.exchange.smtp_twin import TwinListener, run_listeners
from relayguard.lab.exchange.state import TwinState
from relayguard.lab.exchange.store import StateStore

PORT = 10025
UNTRUSTED = "127.0.60.200"
TRUSTED = "127.0.59.10"
_addresses = (f"127.0.{50 + i // 250}.{1 + i % 250}" for i in itertools.count())


def next_address() -> str:
    return next(_addresses)


def wait_port(host: str, port: int, *, up: bool, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise AssertionError(f"{host}:{port} did not become {'reachable' if up else 'closed'}")


class TwinServer:
    """One twin served from a state file in a background event loop."""

    def __init__(self, state: TwinState, directory: Path) -> None:
        self.address = state.address
        self.port = PORT
        self.store = StateStore(directory / f"{state.name}.json")
        self.store.save(state)
        self.mail_log = directory / f"{state.name}.mail.jsonl"
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TwinServer:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._stop = asyncio.Event()
            listener = TwinListener(self.store, self.address, self.port, self.mail_log)
            ready.set()
            self._loop.run_until_complete(run_listeners([listener], self._stop))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        wait_port(self.address, self.port, up=True)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        self._thread = None
        wait_port(self.address, self.port, up=False)

    @property
    def target(self) -> str:
        return f"{self.address}:{self.port}"


@pytest.fixture
def twin_server(tmp_path: Path) -> Iterator[Callable[[TwinState], TwinServer]]:
    started: list[TwinServer] = []

    def make(state: TwinState) -> TwinServer:
        server = TwinServer(state, tmp_path).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
