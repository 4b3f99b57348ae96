"""Reading what a host runs today, for the remediation rooms (relay apply and patch).

`read_relay_config` returns the platform and the relay configuration document of
`exchange55.read_config` / `modern.read_config` (docs/payloads.md); `read_detect` returns
`exchange.detect`. These are the only reads remediation makes, through the same real
PowerShell read templates as the facts room (`relayguard.exchange.facts`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from relayguard.exchange import capture, payloads
from relayguard.vocabulary import ExchangeGeneration


class PayloadRunner(Protocol):
    """What remediation needs of a transport (`WinRMClient` is one)."""

    def run_payload(self, payload: payloads.RenderedPayload) -> Any: ...


@runtime_checkable
class FileUploader(Protocol):
    """A transport that writes a whole file in bulk (`WinRMClient`: WS-Man Send on a
    command's stdin), checking its length and SHA-256 on the host. Transports without it
    (the SMB channel) take `file.append_chunk` payloads."""

    def upload_file(self, data: bytes, remote: str) -> None: ...


@runtime_checkable
class SessionHolder(Protocol):
    """A transport whose payloads can share one shell (`WinRMClient.session`)."""

    def session(self) -> contextlib.AbstractContextManager[None]: ...


def held_session(runner: object) -> contextlib.AbstractContextManager[None]:
    """`runner.session()` where the transport has one: a task's payloads share a shell."""
    return runner.session() if isinstance(runner, SessionHolder) else contextlib.nullcontext()


class ReadError(ValueError):
    """A read payload answered with a document remediation cannot use."""


@dataclass(frozen=True)
class RelayConfig:
    platform: ExchangeGeneration
    server: str
    document: Mapping[str, Any]


def read_payload(op: str, params: Mapping[str, Any] | None = None) -> payloads.RenderedPayload:
    """The rendered read payload of `op` (its real PowerShell template)."""
    return payloads.render(op, params or {})


def read_detect(client: PayloadRunner) -> Mapping[str, Any]:
    document = client.run_payload(payloads.render("exchange.detect", {}))
    if not isinstance(document, dict):
        raise ReadError("exchange.detect did not print a JSON object")
    return document


def platform_of(detect: Mapping[str, Any]) -> ExchangeGeneration:
    if detect.get("Exchange55"):
        return ExchangeGeneration.EXCHANGE55
    if detect.get("Exchange15"):
        return ExchangeGeneration.MODERN
    raise ReadError("no Exchange found on the host (neither Exchange 5.5 nor 2013 or later)")


def read_config(client: PayloadRunner, platform: ExchangeGeneration) -> Mapping[str, Any]:
    op = f"{platform.value}.read_config"
    document = client.run_payload(read_payload(op))
    if not isinstance(document, dict):
        raise ReadError(f"{op} did not print a JSON object")
    try:
        document = capture.read_output(op, document)
    except capture.CaptureError as exc:
        raise ReadError(str(exc)) from None
    key = "Parameters" if platform is ExchangeGeneration.EXCHANGE55 else "ReceiveConnectors"
    if key not in document:
        raise ReadError(f"{op} printed no {key}")
    return document


def relay_config_of(detect: Mapping[str, Any], document: Mapping[str, Any]) -> RelayConfig:
    """What `read_relay_config` returns, from an `exchange.detect` document and the
    platform's read_config document already read (and checked by `capture.read_output`)."""
    generation = platform_of(detect)
    key = "Parameters" if generation is ExchangeGeneration.EXCHANGE55 else "ReceiveConnectors"
    if key not in document:
        raise ReadError(f"{generation.value}.read_config printed no {key}")
    server = str(document.get("Server") or detect.get("ComputerName") or "")
    return RelayConfig(generation, server, document)


def read_relay_config(
    client: PayloadRunner,
    platform: ExchangeGeneration | str | None = None,
    *,
    with_server: bool = True,
) -> RelayConfig:
    """The platform (detected unless given) and its relay configuration document; the
    server's name too unless `with_server` is false (it may cost a detect on 5.5)."""
    detect: Mapping[str, Any] = {}
    if platform is None:
        detect = read_detect(client)
        generation = platform_of(detect)
    else:
        generation = ExchangeGeneration(platform)
    document = read_config(client, generation)
    if with_server and not document.get("Server") and not detect:
        detect = read_detect(client)  # the 5.5 document does not name the server
    server = str(document.get("Server") or detect.get("ComputerName") or "")
    return RelayConfig(generation, server, document)
