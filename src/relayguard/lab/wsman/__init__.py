"""The WinRM side of the lab's Exchange twins: a WS-Management endpoint pywinrm talks to.

Public API (what the lab uses):

    from relayguard.lab.ca import LabCA
    from relayguard.lab.wsman import (
        EndpointConfig, WinRMAccount, WinRMEndpoint,      # the listener
        OpRegistry, OpError, OpResult, PayloadDispatcher,  # payload protocol v1 and ops
        FaultKind, InjectedFault,                          # fault injection
    )

    ca = LabCA.ensure(lab_dir / "ca")
    cert = ca.issue_server_certificate(twin_dir, "ex2019.lab.test", ["127.0.30.5"])
    registry: OpRegistry[Twin] = OpRegistry()
    registry.register("exchange.detect", detect)         # detect(params, twin) -> dict
    endpoint = WinRMEndpoint(EndpointConfig(
        name="ex2019", address="127.0.30.5", port=5986, certificate=cert,
        accounts=(WinRMAccount("relayguard", password),), twin_dir=twin_dir,
        handler=PayloadDispatcher(registry, twin)))
    endpoint.start()          # listening when it returns; endpoint.url is the WinRM URL
    endpoint.faults.set(InjectedFault(FaultKind.HANG, action="Command"))
    endpoint.stop()           # nothing left listening, no thread left
    stop_endpoints(endpoints) # a whole fleet, in parallel

Modules: ``server`` (HTTP(S), auth, encryption, lifecycle), ``service`` (the shell protocol),
``shells``, ``soap``, ``faults`` (SOAP faults), ``cmdline`` (cmd.exe/powershell.exe command
lines), ``dispatch`` (the seam: PayloadHandler, ops), ``payload`` (protocol v1 parsing),
``fileops`` and ``scratch`` (file ops), ``pserror`` (PowerShell error text), ``auth``,
``encryption``, ``injection``.
"""

from relayguard.lab.wsman.auth import WinRMAccount
from relayguard.lab.wsman.dispatch import (
    CommandContext,
    CommandResult,
    OpError,
    OpHandler,
    OpRegistry,
    OpResult,
    PayloadDispatcher,
    PayloadHandler,
    ScriptSource,
)
from relayguard.lab.wsman.injection import FaultKind, InjectedFault
from relayguard.lab.wsman.server import (
    EndpointConfig,
    EndpointError,
    WinRMEndpoint,
    stop_endpoints,
)

__all__ = [
    "CommandContext",
    "CommandResult",
    "EndpointConfig",
    "EndpointError",
    "FaultKind",
    "InjectedFault",
    "OpError",
    "OpHandler",
    "OpRegistry",
    "OpResult",
    "PayloadDispatcher",
    "PayloadHandler",
    "ScriptSource",
    "WinRMAccount",
    "WinRMEndpoint",
    "stop_endpoints",
]
