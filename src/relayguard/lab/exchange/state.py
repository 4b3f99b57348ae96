"""The twin state document: what an emulated Exchange server *is*, as typed records.

One document per twin, persisted as JSON (see `relayguard.lab.exchange.store`). The SMTP listener
derives every reply from it and the WinRM op handlers read and write it, so a change made
over WinRM is what the next SMTP session sees. Field names follow the real storage they
stand for (registry value names, cmdlet property names) so the op handlers can print what a
real server prints. Facts and their sources: docs/sources.md, docs/lab.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

SCHEMA = "relayguard.lab.twin/1"

ServiceStatus = Literal["Running", "Stopped", "StartPending", "StopPending"]


# --------------------------------------------------------------------------- lab-only knobs


@dataclass
class Fault:
    """Fault injection: the next `count` runs of `op` fail (or hang) instead of running."""

    op: str
    mode: Literal["error", "hang"] = "error"
    count: int = 1
    message: str = "The operation failed (fault injected by the lab)."
    hang_seconds: float = 600.0
    after_apply: bool = False  # apply the write first, then fail (a step that half-ran)


@dataclass
class LabKnobs:
    """Knobs that exist only in the lab; never shown by an op handler."""

    # Seconds actually waited before an error reply; None = the connector's TarpitInterval
    # (Exchange's default 00:00:05), as on a real server.
    tarpit_seconds: float | None = None
    # A service restart keeps the SMTP listener down this long (StopPending → StartPending).
    restart_seconds: float = 1.0
    # When true, mail from legitimate relay clients stops flowing as soon as the relay
    # configuration differs from the baseline captured at `lab up` (orchestration tests:
    # verify must notice and roll back; restoring the baseline makes the flow work again).
    break_legit_flow_after_change: bool = False
    baseline_fingerprint: str = ""
    faults: list[Fault] = field(default_factory=list)


@dataclass
class ServiceState:
    """A Windows service as `Get-Service` shows it, plus when its listener answers again."""

    Name: str
    DisplayName: str
    Status: ServiceStatus = "Running"
    StartType: Literal["Automatic", "Manual", "Disabled"] = "Automatic"
    # Epoch seconds until which a restart is in progress (the SMTP listener is down).
    restart_until: float = 0.0


# --------------------------------------------------------------------------- Exchange 5.5


@dataclass
class ImsParameters:
    """HKLM\\SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters (KB Q193922).

    None = the value does not exist. RelayFlags is a REG_DWORD bit set (1 deny list,
    2 allow list, 4 local-IP list, 8 authenticated clients); the lists are REG_MULTI_SZ with
    one `net;mask` entry a line.
    """

    RelayFlags: int | None = None
    RelayAllowList: list[str] | None = None
    RelayDenyList: list[str] | None = None
    RelayLocalIPList: list[str] | None = None


@dataclass
class RoutingEntry:
    """One row of the IMS Routing tab's list (KB Q169683, Q259531)."""

    Domain: str  # matches its subdomains too; "#domain" only itself (KB Q169683, Q259531)
    Action: Literal["Inbound", "Reroute"] = "Inbound"
    Host: str = ""  # for Reroute: the host mail to Domain is sent to
    # "Override relay restrictions. Always relay." (KB Q169683, Q259531): relays for anyone
    AlwaysRelay: bool = False


@dataclass
class ImsRouting:
    """The IMS Routing tab: "Do not reroute" / "Reroute incoming SMTP mail" and its list."""

    RerouteIncoming: bool = False
    RoutingList: list[RoutingEntry] = field(default_factory=list)
    # Connections tab "Forward all messages to host" (KB Q264330 needs it; "" = not set)
    ForwardAllHost: str = ""


@dataclass
class ImsRunning:
    """What the running MSExchangeIMC loaded when it last started (registry is read at start)."""

    Parameters: ImsParameters
    Routing: ImsRouting
    ImcFileVersion: str


@dataclass
class Exchange55:
    """An Exchange Server 5.5 host with the Internet Mail Service (KB Q158530 builds)."""

    ServerName: str  # NetBIOS name, e.g. EX55A
    Fqdn: str  # the name in the SMTP banner
    LocalDomain: str  # the site's SMTP address space (always local)
    ProductVersion: str  # "5.5.2448.4" (SP2)
    ServicePack: int  # 0..4
    InstallPath: str
    ImcFileVersion: str  # msexcimc.exe file version, carries post-SP hotfixes (KB Q237927)
    Parameters: ImsParameters
    Routing: ImsRouting
    Service: ServiceState
    Running: ImsRunning | None = None
    RebootRequired: bool = False
    Mailboxes: list[str] = field(default_factory=list)
    # AUTH LOGIN accounts of the IMS: user -> sha256 hex of the password (never the password).
    SmtpAccounts: dict[str, str] = field(default_factory=dict)

    @property
    def build(self) -> int:
        return int(self.ProductVersion.split(".")[2])

    @property
    def setup_values(self) -> dict[str, int]:
        """HKLM\\SOFTWARE\\Microsoft\\Exchange\\Setup as the lab stores it (unverified)."""
        return {"NewestBuild": self.build, "ServicePackBuild": self.ServicePack}

    def loaded(self) -> ImsRunning:
        """What the IMS runs with: its start-time snapshot, or the configuration if none yet."""
        if self.Running is not None:
            return self.Running
        return self.snapshot()

    def snapshot(self) -> ImsRunning:
        return ImsRunning(
            Parameters=dataclasses.replace(
                self.Parameters,
                RelayAllowList=_copy_list(self.Parameters.RelayAllowList),
                RelayDenyList=_copy_list(self.Parameters.RelayDenyList),
                RelayLocalIPList=_copy_list(self.Parameters.RelayLocalIPList),
            ),
            Routing=ImsRouting(
                RerouteIncoming=self.Routing.RerouteIncoming,
                RoutingList=[dataclasses.replace(e) for e in self.Routing.RoutingList],
                ForwardAllHost=self.Routing.ForwardAllHost,
            ),
            ImcFileVersion=self.ImcFileVersion,
        )

    @property
    def pending_restart(self) -> bool:
        """The registry or binary changed since MSExchangeIMC last started."""
        return self.Running is not None and to_jsonable(self.Running) != to_jsonable(
            self.snapshot()
        )


# --------------------------------------------------------------------------- Exchange 2013+


@dataclass
class AdPermission:
    """One ACE on a receive connector as `Get-ADPermission` lists it."""

    User: str
    ExtendedRights: list[str]
    Deny: bool = False
    IsInherited: bool = False


@dataclass
class ReceiveConnector:
    """A receive connector (`Get-ReceiveConnector` property names)."""

    Name: str
    Bindings: list[str]
    RemoteIPRanges: list[str]
    PermissionGroups: list[str]
    AuthMechanism: list[str]
    TransportRole: Literal["FrontendTransport", "HubTransport"]
    Enabled: bool = True
    Fqdn: str = ""
    # Exchange's default (docs/sources.md#learn-receive-connectors)
    TarpitInterval: str = "00:00:05"
    MaxRecipientsPerMessage: int = 200
    # Connections served at once (Set-ReceiveConnector's defaults, None = unlimited;
    # docs/sources.md#learn-set-receiveconnector): on the connector, from one IP address, and
    # from one IP address as a percentage of the connector's remaining connections.
    MaxInboundConnection: int | None = 5000
    MaxInboundConnectionPerSource: int | None = 20
    MaxInboundConnectionPercentagePerSource: int = 2
    Permissions: list[AdPermission] = field(default_factory=list)


@dataclass
class AcceptedDomain:
    """An accepted domain (`Get-AcceptedDomain`)."""

    Name: str
    DomainName: str  # "corp.example", "*.corp.example" or "*"
    DomainType: Literal["Authoritative", "InternalRelay", "ExternalRelay"] = "Authoritative"
    Default: bool = False


@dataclass
class RecipientFilterConfig:
    """`Get-RecipientFilterConfig`: recipient validation at RCPT time."""

    Enabled: bool = True
    RecipientValidationEnabled: bool = False


@dataclass
class TransportAgent:
    """`Get-TransportAgent`: one agent of the Transport service."""

    Identity: str
    Enabled: bool = True


@dataclass
class InstalledUpdate:
    """A subkey of HKLM\\SOFTWARE\\Microsoft\\Updates\\Exchange 20xx (installed SUs)."""

    Key: str  # e.g. "KB5049233"
    PackageName: str
    InstalledDate: str  # as the installer writes it, e.g. "11/12/2024"


@dataclass
class ExchangeModern:
    """An Exchange 2013 / 2016 / 2019 / SE Mailbox server."""

    ServerName: str
    Fqdn: str
    ExSetupVersion: str  # ExSetup.exe file version, e.g. "15.2.1544.14" (moves with SUs)
    SetupVersion: str  # v15\Setup Msi* values: the CU build, e.g. "15.2.1544.4"
    InstallPath: str
    ReceiveConnectors: list[ReceiveConnector]
    AcceptedDomains: list[AcceptedDomain]
    RecipientFilter: RecipientFilterConfig
    Service: ServiceState
    Updates: list[InstalledUpdate] = field(default_factory=list)
    RebootRequired: bool = False
    Mailboxes: list[str] = field(default_factory=list)
    ServerRole: str = "Mailbox"  # Get-ExchangeServer; 2013: "Mailbox", "Mailbox, ClientAccess"
    TransportAgents: list[TransportAgent] = field(default_factory=list)

    @property
    def frontend_transport(self) -> bool:
        """The Front End Transport service exists on 2013 Client Access servers and on every
        2016+ Mailbox server (docs/sources.md#learn-receive-connectors)."""
        return self.product != "2013" or "ClientAccess" in self.ServerRole

    def agent_enabled(self, identity: str) -> bool:
        return any(
            a.Identity.lower() == identity.lower() and a.Enabled for a in self.TransportAgents
        )

    @property
    def product(self) -> str:
        """2013 / 2016 / 2019 / SE from the version; 15.2 ≥ 2562 = SE
        (docs/sources.md#healthchecker-build-detection)."""
        major, minor, build = (int(p) for p in self.SetupVersion.split(".")[:3])
        if (major, minor) == (15, 0):
            return "2013"
        if (major, minor) == (15, 1):
            return "2016"
        return "SE" if build >= 2562 else "2019"

    @property
    def updates_key(self) -> str:
        """Where setup records installed updates: `Updates\\Exchange 2013|2016|2019`, and the
        2019 key for SE too, as CSS-Exchange HealthChecker reads it (Get-ExchangeUpdates.ps1,
        docs/sources.md#healthchecker-updates-key)."""
        name = "2019" if self.product == "SE" else self.product
        return f"HKLM:\\SOFTWARE\\Microsoft\\Updates\\Exchange {name}"


# --------------------------------------------------------------------------- the document


@dataclass
class TwinState:
    """The whole state document of one twin."""

    name: str
    platform: str  # a relayguard.vocabulary.Platform value
    address: str  # loopback address both listeners bind
    exchange55: Exchange55 | None = None
    modern: ExchangeModern | None = None
    lab: LabKnobs = field(default_factory=LabKnobs)
    schema: str = SCHEMA

    def relay_fingerprint(self) -> str:
        """A hash of the relay configuration (what `break_legit_flow_after_change` compares)."""
        if self.exchange55 is not None:
            doc: Any = {
                "p": to_jsonable(self.exchange55.Parameters),
                "r": to_jsonable(self.exchange55.Routing),
            }
        elif self.modern is not None:
            doc = {
                "c": to_jsonable(self.modern.ReceiveConnectors),
                "d": to_jsonable(self.modern.AcceptedDomains),
                "f": to_jsonable(self.modern.RecipientFilter),
            }
        else:
            doc = None
        text = json.dumps(doc, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def legit_flow_broken(self) -> bool:
        knobs = self.lab
        return knobs.break_legit_flow_after_change and (
            self.relay_fingerprint() != knobs.baseline_fingerprint
        )


# --------------------------------------------------------------------------- JSON codec


def _copy_list(values: list[str] | None) -> list[str] | None:
    return None if values is None else list(values)


_SCALARS = (str, int, float, bool, type(None))


def to_jsonable(value: Any) -> Any:
    """Dataclasses to plain JSON values (field order kept)."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_jsonable(getattr(value, name)) for name in _field_names(type(value))}
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


class StateError(ValueError):
    """A state document that does not match the schema."""


T = TypeVar("T")


def from_jsonable(cls: type[T], data: Any) -> T:
    """Build a dataclass from plain JSON values, checking every type on the way."""
    result: T = _decode(cls, data, cls.__name__)
    return result


def _decode(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, data, where)
            except StateError as exc:
                errors.append(str(exc))
        raise StateError("; ".join(errors))
    if origin is Literal:
        if data not in typing.get_args(tp):
            raise StateError(f"{where}: {data!r} is not one of {typing.get_args(tp)}")
        return data
    if origin is list:
        if not isinstance(data, list):
            raise StateError(f"{where}: expected a list")
        (item,) = typing.get_args(tp)
        return [_decode(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise StateError(f"{where}: expected an object")
        _, item = typing.get_args(tp)
        return {str(k): _decode(item, v, f"{where}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, where)
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise StateError(f"{where}: expected a number")
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise StateError(f"{where}: expected {tp.__name__}, got {type(data).__name__}")
        return data
    if tp is Any:
        return data
    raise StateError(f"{where}: unsupported type {tp!r}")


@functools.cache
def _schema(tp: Any) -> tuple[frozenset[str], tuple[tuple[str, Any, bool], ...]]:
    """A dataclass's field names, and each field's name, type and whether it is required:
    resolved once per class (the lab daemon decodes a twin's state on every write, and
    typing.get_type_hints was most of that)."""
    hints = typing.get_type_hints(tp)
    fields = tuple(
        (
            f.name,
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(tp)
    )
    return frozenset(name for name, _, _ in fields), fields


def _decode_dataclass(tp: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise StateError(f"{where}: expected an object")
    known, fields = _schema(tp)
    kwargs: dict[str, Any] = {}
    unknown = set(data) - known
    if unknown:
        raise StateError(f"{where}: unknown field(s) {sorted(unknown)}")
    for name, hint, required in fields:
        if name in data:
            kwargs[name] = _decode(hint, data[name], f"{where}.{name}")
        elif required:
            raise StateError(f"{where}: missing field {name!r}")
    return tp(**kwargs)


def dumps(state: TwinState) -> str:
    return json.dumps(to_jsonable(state), indent=2) + "\n"


def loads(text: str) -> TwinState:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise StateError(f"not a {SCHEMA} document")
    return from_jsonable(TwinState, data)
