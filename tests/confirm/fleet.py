"""Lab twins served in-process for the delivery-confirmation tests, and `relayguard probe`.

Addresses (this room's share of the lab fleet range): twins 127.0.47.x, the sink
127.0.48.250, the probe's source 127.0.49.200 (an untrusted client for every profile).
The twins deliver to the sink's port, so no test here needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayguard.commands import probe as probe_command
from relayguard.lab.exchange.smtp_twin import TwinListener, run_listeners
from relayguard.lab.exchange.state import TwinState
from relayguard.lab.exchange.store import StateStore

TWIN_PORT = 10025
SINK = "127.0.48.250"
SINK_PORT = 10026
SOURCE = "127.0.49.200"
CLOSED_PORT = 10099  # nothing listens there: a twin that delivers there never delivers
_addresses = (f"127.0.47.{i}" for i in itertools.count(1))


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


class Twin:
    """One twin in a background event loop, delivering to `delivery_port`."""

    def __init__(self, state: TwinState, directory: Path, delivery_port: int) -> None:
        self.address = state.address
        self.store = StateStore(directory / f"{state.name}.json")
        self.store.save(state)
        self.mail_log = directory / f"{state.name}.mail.jsonl"
        self.delivery_port = delivery_port
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Twin:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._stop = asyncio.Event()
            listener = TwinListener(
                self.store, self.address, TWIN_PORT, self.mail_log, self.delivery_port
            )
            ready.set()
            self._loop.run_until_complete(run_listeners([listener], self._stop))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        wait_port(self.address, TWIN_PORT, up=True)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        self._thread = None

    @property
    def target(self) -> str:
        return f"{self.address}:{TWIN_PORT}"

    def log(self) -> list[dict[str, Any]]:
        if not self.mail_log.exists():
            return []
        return [json.loads(line) for line in self.mail_log.read_text().splitlines()]

    def data_count(self) -> int:
        """Messages this twin accepted with DATA (one log entry each)."""
        return sum(1 for entry in self.log() if "recipients" in entry)


@dataclass(frozen=True)
class ProbeRun:
    returncode: int
    document: dict[str, Any]
    stderr: str

    def host(self, target: str) -> dict[str, Any]:
        hosts = [h for h in self.document["hosts"] if h["target"] == target]
        assert len(hosts) == 1, (target, [h["target"] for h in self.document["hosts"]])
        return hosts[0]


def run_probe(*args: str) -> ProbeRun:
    """`relayguard probe --json ARGS` in this process (the subcommand alone, as cli.py
    registers it), every wait bounded by the probe's own time bounds."""
    parser = argparse.ArgumentParser(prog="relayguard")
    probe_command.register(parser.add_subparsers())
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            parsed = parser.parse_args(["probe", "--json", "--timeout", "5", *args])
            returncode = parsed.func(parsed)
        except SystemExit as exc:  # argparse usage errors
            returncode = int(exc.code or 0)
    document = json.loads(out.getvalue()) if out.getvalue().strip() else {}
    return ProbeRun(returncode, document, err.getvalue())
