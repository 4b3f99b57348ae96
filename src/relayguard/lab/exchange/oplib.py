"""What every op handler of the Exchange twins shares: the twin context and failure helpers.

Handlers follow the WinRM endpoint's contract (`relayguard.lab.wsman.dispatch`):
`handler(params, twin) -> JSON document | OpResult`, or `raise OpError(message)` for a
PowerShell-style failure (message on stderr, non-zero exit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from relayguard.lab.exchange.state import Exchange55, ExchangeModern, ServiceState, TwinState
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.wsman.dispatch import OpError
from relayguard.lab.wsman.scratch import ScratchStore


@dataclass
class TwinContext:
    """The twin an op runs on: its state, its temporary files and the lab's packages."""

    store: StateStore
    scratch: ScratchStore | None = None
    packages_dir: Path | None = None  # served as C:\\Patches\\<name> (a pre-staged share)
    # Where this twin, playing a management host, dials the 5.5 twins' SMB (Windows: 445;
    # the lab's endpoints listen on 10445 when not root).
    smb_port: int = 445


def fail(message: str, *, delay_seconds: float = 0.0) -> NoReturn:
    raise OpError(message, delay_seconds=delay_seconds)


def require_exchange55(state: TwinState) -> Exchange55:
    if state.exchange55 is None:
        fail(_not_installed("Exchange Server 5.5"))
    return state.exchange55


def require_modern(state: TwinState) -> ExchangeModern:
    if state.modern is None:
        fail(
            "The term 'Get-ReceiveConnector' is not recognized as the name of a cmdlet, "
            "function, script file, or operable program."
        )
    return state.modern


def service_of(state: TwinState) -> ServiceState:
    x = state.exchange55 or state.modern
    assert x is not None
    return x.Service


def _not_installed(product: str) -> str:
    return f"{product} is not installed on this computer."


def service_document(service: ServiceState) -> dict[str, str]:
    """`Get-Service | Select-Object Name, DisplayName, Status, StartType`, enums as strings."""
    return {
        "Name": service.Name,
        "DisplayName": service.DisplayName,
        "Status": service.Status,
        "StartType": service.StartType,
    }
