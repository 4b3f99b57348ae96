"""Fixtures: a 5.5 twin serving SMTP and SMB over one state document on 127.0.130.x.

127.0.130.0/24 is this suite's range (docs/sources.md#decision-lab-addresses). SMB listens on
445 when the tests run as root (as on Windows), else on 10445: every twin has its own
loopback address, so the port is free on each.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relayguard.exchange.smb_channel import SmbOptions
from relayguard.exchange.transport import Secret
from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.smtp_twin import TwinListener, run_listeners
from relayguard.lab.exchange.state import TwinState
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.smb.server import SmbTwin

SMTP_PORT = 10025
SMB_PORT = 445 if os.geteuid() == 0 else 10445
USER = "Administrator"
PASSWORD = "Smb-Lab-Pass-7f3e!"  # a value the secret tests look for in every output
UNTRUSTED = "127.0.130.250"
TRUSTED = "127.0.59.10"  # inside profiles.TRUSTED_NET_MASK
_addresses = (f"127.0.130.{i}" for i in itertools.count(1))


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{host}:{port} did not open")


@dataclass
class Twin:
    address: str
    store: StateStore
    smb: SmbTwin
    smtp_port: int = SMTP_PORT
    smb_port: int = SMB_PORT

    def options(self, password: str = PASSWORD) -> SmbOptions:
        return SmbOptions(self.address, USER, Secret(password), port=self.smb_port, timeout=20)


def spec(name: str) -> profiles.TwinSpec:
    return profiles.TwinSpec(name=name, server="EX55S", address=next(_addresses))


@pytest.fixture
def smb_twin(tmp_path: Path) -> Iterator[Callable[[TwinState], Twin]]:
    stops: list[Callable[[], None]] = []

    def make(state: TwinState) -> Twin:
        store = StateStore(tmp_path / f"{state.name}.json")
        store.save(state)
        smb = SmbTwin(store, state.address, SMB_PORT, USER, PASSWORD, tmp_path / state.name)
        smb.start()
        stops.append(smb.stop)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        listener = TwinListener(store, state.address, SMTP_PORT, tmp_path / f"{state.name}.log")

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(run_listeners([listener], stop))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        stops.append(lambda: (loop.call_soon_threadsafe(stop.set), thread.join(10)))
        wait_port(state.address, SMB_PORT)
        wait_port(state.address, SMTP_PORT)
        return Twin(state.address, store, smb)

    yield make
    for stop_one in reversed(stops):
        stop_one()
