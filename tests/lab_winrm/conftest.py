"""Fixtures for the WinRM twin tests: a lab CA, endpoints on 127.0.20.x, pywinrm sessions.

Every endpoint a test starts is stopped at teardown, even when the test fails. Addresses
come from this area's range (127.0.20.0/24); clients never use a proxy.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import winrm

from relayguard.lab.ca import LabCA
from relayguard.lab.wsman import (
    EndpointConfig,
    EndpointError,
    OpError,
    OpRegistry,
    OpResult,
    PayloadDispatcher,
    WinRMAccount,
    WinRMEndpoint,
)

USER = "relayguard"
PASSWORD = "Lab-Pa55xYz!9q"
# 127.0.20.10-199 for these tests (.200-.209 belong to tests/exchange). The order is shuffled
# per process so two concurrent runs of this suite rarely pick the same address; when they
# do, the fixture moves on to the next one.
_host_numbers = list(range(10, 200))
random.shuffle(_host_numbers)
_addresses = itertools.cycle(_host_numbers)
BIND_ATTEMPTS = 8


def next_address() -> str:
    return f"127.0.20.{next(_addresses)}"


@dataclass
class FakeTwin:
    """The twin context the test ops receive: a name and a record of calls."""

    name: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _echo(params: dict[str, Any], twin: FakeTwin) -> dict[str, Any]:
    twin.calls.append(("test.echo", params))
    return {"params": params, "twin": twin.name}


def _fail(params: dict[str, Any], twin: FakeTwin) -> dict[str, Any]:
    twin.calls.append(("test.fail", params))
    raise OpError(str(params.get("message", "failed")), exit_code=int(params.get("exit", 3)))


def _slow(params: dict[str, Any], twin: FakeTwin) -> OpResult:
    twin.calls.append(("test.slow", params))
    return OpResult({"slept": params["delay"]}, delay_seconds=float(params["delay"]))


def _big(params: dict[str, Any], twin: FakeTwin) -> dict[str, Any]:
    twin.calls.append(("test.big", params))
    return {"data": "x" * int(params["size"])}


def _crash(params: dict[str, Any], twin: FakeTwin) -> dict[str, Any]:
    raise RuntimeError("bug in a handler")


def make_registry() -> OpRegistry[FakeTwin]:
    registry: OpRegistry[FakeTwin] = OpRegistry()
    registry.register("test.echo", _echo)
    registry.register("test.fail", _fail)
    registry.register("test.slow", _slow)
    registry.register("test.big", _big)
    registry.register("test.crash", _crash)
    return registry


def payload_script(op: str, params: dict[str, Any], body: str = "Write-Output $null") -> str:
    """A script in the agreed shape (header, params line, a body the twin never runs)."""
    encoded = base64.b64encode(json.dumps(params).encode("utf-8")).decode("ascii")
    return (
        f"# relayguard-payload: {op} v1\n"
        "$ErrorActionPreference = 'Stop'\n"
        "$RelayguardParams = [System.Text.Encoding]::UTF8.GetString("
        f"[System.Convert]::FromBase64String('{encoded}')) | ConvertFrom-Json\n"
        f"{body}\n"
    )


@pytest.fixture(scope="session")
def lab_ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.create(tmp_path_factory.mktemp("lab") / "ca")


@dataclass
class RunningTwin:
    endpoint: WinRMEndpoint
    twin: FakeTwin
    ca: LabCA

    def session(
        self,
        transport: str = "ntlm",
        *,
        username: str = USER,
        password: str = PASSWORD,
        **kwargs: Any,
    ) -> winrm.Session:
        options: dict[str, Any] = {
            "transport": transport,
            "server_cert_validation": "validate",
            "ca_trust_path": str(self.ca.cert_path),
            "proxy": None,
            "read_timeout_sec": 30,
            "operation_timeout_sec": 20,
        }
        options.update(kwargs)
        return winrm.Session(self.endpoint.url, auth=(username, password), **options)


TwinFactory = Callable[..., RunningTwin]


@pytest.fixture
def start_twin(lab_ca: LabCA, tmp_path: Path) -> Iterator[TwinFactory]:
    started: list[WinRMEndpoint] = []

    def start(
        *,
        tls: bool = True,
        accounts: tuple[WinRMAccount, ...] = (WinRMAccount(USER, PASSWORD),),
        **config: Any,
    ) -> RunningTwin:
        name = f"twin{len(started)}"
        twin_dir = tmp_path / name
        twin = FakeTwin(name)
        for attempt in range(BIND_ATTEMPTS):
            address = next_address()
            certificate = (
                lab_ca.issue_server_certificate(twin_dir, f"{name}.lab.test", [address])
                if tls
                else None
            )
            endpoint = WinRMEndpoint(
                EndpointConfig(
                    name=name,
                    address=address,
                    accounts=accounts,
                    twin_dir=twin_dir,
                    handler=PayloadDispatcher(make_registry(), twin),
                    certificate=certificate,
                    **config,
                )
            )
            try:
                endpoint.start()
            except EndpointError as exc:
                if "in use" not in str(exc) or attempt == BIND_ATTEMPTS - 1:
                    raise
                continue
            started.append(endpoint)
            return RunningTwin(endpoint, twin, lab_ca)
        raise AssertionError("unreachable")

    yield start
    for endpoint in started:
        endpoint.stop()


@pytest.fixture
def twin(start_twin: TwinFactory) -> RunningTwin:
    return start_twin()
