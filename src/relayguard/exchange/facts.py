"""Exchange facts: what a server is and how its relay is configured, collected over WinRM.

The collection room. `collect_facts` runs the read-only payloads (`exchange.detect`, then
`exchange55.read_config` or `modern.read_config`) on one host and turns their documents
(docs/payloads.md) into typed records; `file_version` reads one binary's version (the patch
room verifies an install with it). Parsing a document is pure (`facts_from_documents`); the
only I/O is the payload runner's calls (WinRM, SMB or a management host). Judging the
facts is `relayguard.exchange.analysis`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, TypeVar

from relayguard.exchange import capture, payloads
from relayguard.exchange.catalog import BuildExplanation, InvalidVersionError, explain
from relayguard.exchange.current import PayloadRunner
from relayguard.vocabulary import Platform

T = TypeVar("T")


class FactsError(ValueError):
    """A payload printed a document that does not have the documented shape."""


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileVersion:
    """`(Get-Item PATH).VersionInfo`: the resource string and the four numeric parts."""

    path: str
    file_version: str | None  # the resource string as stored ("15.02.1544.004")
    parts: tuple[int, int, int, int]

    @property
    def version(self) -> str:
        """The comparable dotted version from the numeric parts ("15.2.1544.4")."""
        return ".".join(str(p) for p in self.parts)


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    status: str | None
    start_type: str | None
    display_name: str | None = None


@dataclass(frozen=True)
class InstalledUpdate:
    key: str
    package_name: str | None
    installed_date: str | None


@dataclass(frozen=True)
class RoutingEntry:
    domain: str
    action: str  # "Inbound" (accepted as inbound) or "Reroute"
    host: str
    # "Override relay restrictions. Always relay." (KB Q169683, Q259531): relays for anyone
    always_relay: bool = False


@dataclass(frozen=True)
class Exchange55Relay:
    """The IMS relay configuration: registry parameters (KB Q193922) and the Routing tab."""

    parameters_path: str
    relay_flags: int | None  # None: the value does not exist
    relay_allow_list: tuple[str, ...] | None
    relay_deny_list: tuple[str, ...] | None
    relay_local_ip_list: tuple[str, ...] | None
    routing_source: str  # where the Routing tab was read; "unknown" when it could not be
    reroute_incoming: bool | None
    routing_list: tuple[RoutingEntry, ...] | None
    service: ServiceInfo | None
    imc_file_version: str | None


@dataclass(frozen=True)
class ReceiveConnector:
    identity: str
    name: str
    server: str | None
    bindings: tuple[str, ...]
    remote_ip_ranges: tuple[str, ...]
    permission_groups: tuple[str, ...]  # flag members, e.g. ("AnonymousUsers", "ExchangeServers")
    auth_mechanism: tuple[str, ...]
    transport_role: str | None
    enabled: bool
    fqdn: str | None
    tarpit_interval: str | None
    max_recipients_per_message: int | None


@dataclass(frozen=True)
class AdPermission:
    """One ACE (and one extended right) of NT AUTHORITY\\ANONYMOUS LOGON on a connector."""

    identity: str
    user: str
    extended_rights: tuple[str, ...]
    access_rights: tuple[str, ...]
    deny: bool
    is_inherited: bool


@dataclass(frozen=True)
class AcceptedDomain:
    name: str
    domain_name: str
    domain_type: str  # Authoritative, InternalRelay, ExternalRelay
    default: bool


@dataclass(frozen=True)
class RecipientFilter:
    enabled: bool
    recipient_validation_enabled: bool


@dataclass(frozen=True)
class TransportAgent:
    """One agent of the Transport service (`Get-TransportAgent`)."""

    identity: str  # e.g. "Recipient Filter Agent"
    enabled: bool


@dataclass(frozen=True)
class ModernRelay:
    """Receive connectors, anonymous rights, accepted domains, recipient validation.

    None is "not known": a capture made without that file, or a cmdlet that failed. A rule
    that needs an unknown fact says so instead of guessing (docs/exchange.md).
    """

    exchange_shell: str  # "SnapIn", "RemoteExchange", or "Capture" (an offline capture)
    server: str
    receive_connectors: tuple[ReceiveConnector, ...] | None
    anonymous_permissions: tuple[AdPermission, ...] | None
    accepted_domains: tuple[AcceptedDomain, ...] | None
    recipient_filter: RecipientFilter | None
    server_role: str | None = None  # Get-ExchangeServer ServerRole, e.g. "Mailbox, ClientAccess"
    # Whether the Front End Transport service exists here (2013 Client Access and 2016+
    # Mailbox servers; not a 2013 Mailbox-only server): docs/sources.md#learn-receive-connectors
    frontend_transport: bool | None = None
    transport_agents: tuple[TransportAgent, ...] | None = None

    @property
    def antispam_agent_names(self) -> frozenset[str] | None:
        """Lower-case identities of the installed agents (None: not known)."""
        if self.transport_agents is None:
            return None
        return frozenset(a.identity.strip().lower() for a in self.transport_agents)


@dataclass(frozen=True)
class ExchangeFacts:
    """Everything relayguard knows about one Exchange server; `to_dict` is JSON-ready."""

    host: str
    computer_name: str
    platform: Platform
    version: str | None  # the build explained (5.5: 5.5.<NewestBuild>; 15: ExSetup.exe)
    build: BuildExplanation | None
    msexcimc: FileVersion | None  # Exchange 5.5's IMS binary (decides the MS99-027 fix)
    exsetup: FileVersion | None  # Exchange 15's ExSetup.exe (moves with every SU)
    setup_key: Mapping[str, Any]
    installed_updates: tuple[InstalledUpdate, ...]
    service: ServiceInfo | None  # MSExchangeIMC, or the (frontend) transport service
    reboot_pending: bool
    exchange55: Exchange55Relay | None
    modern: ModernRelay | None
    notes: tuple[str, ...] = ()

    @property
    def exchange_shell(self) -> str | None:
        return None if self.modern is None else self.modern.exchange_shell

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["platform"] = self.platform.value
        data["build"] = None if self.build is None else self.build.to_dict()
        data["setup_key"] = dict(self.setup_key)
        data["exchange_shell"] = self.exchange_shell
        data["notes"] = list(self.notes)
        result: dict[str, Any] = _jsonable(data)
        return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- parsing documents (pure) ------------------------------------------------------------------


def _get(document: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(document, Mapping) or key not in document:
        raise FactsError(f"{where}: missing {key!r}")
    return document[key]


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise FactsError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise FactsError(f"{where}: expected true or false, got {type(value).__name__}")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FactsError(f"{where}: expected an integer, got {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # a single value ConvertTo-Json unwrapped
        return (value,)
    if not isinstance(value, list):
        raise FactsError(f"{where}: expected a list of strings")
    return tuple(_str(item, where) for item in value)


def _opt_strings(value: Any, where: str) -> tuple[str, ...] | None:
    return None if value is None else _strings(value, where)


def flag_members(text: str | None) -> tuple[str, ...]:
    """A [Flags] enum's ToString() ("AnonymousUsers, ExchangeServers") as its members."""
    if not text:
        return ()
    members = tuple(part.strip() for part in text.split(",") if part.strip())
    return () if members == ("None",) else members


def file_version_from(document: Any, where: str = "file version") -> FileVersion:
    parts = tuple(
        _opt_int(_get(document, name, where), f"{where}.{name}")
        for name in ("FileMajorPart", "FileMinorPart", "FileBuildPart", "FilePrivatePart")
    )
    if any(part is None for part in parts):
        raise FactsError(f"{where}: a File*Part is null")
    major, minor, build, private = (int(p or 0) for p in parts)
    return FileVersion(
        path=_str(_get(document, "Path", where), f"{where}.Path"),
        file_version=_opt_str(document.get("FileVersion"), f"{where}.FileVersion"),
        parts=(major, minor, build, private),
    )


def _service(document: Any, where: str) -> ServiceInfo | None:
    if document is None:
        return None
    return ServiceInfo(
        name=_str(_get(document, "Name", where), f"{where}.Name"),
        status=_opt_str(document.get("Status"), f"{where}.Status"),
        start_type=_opt_str(document.get("StartType"), f"{where}.StartType"),
        display_name=_opt_str(document.get("DisplayName"), f"{where}.DisplayName"),
    )


def exchange55_relay_from(document: Any) -> Exchange55Relay:
    where = "exchange55.read_config"
    params = _get(document, "Parameters", where)
    routing = _get(document, "Routing", where)
    entries = routing.get("RoutingList") if isinstance(routing, Mapping) else None
    routing_list: tuple[RoutingEntry, ...] | None = None
    if entries is not None:
        if not isinstance(entries, list):
            raise FactsError(f"{where}.Routing.RoutingList: expected a list")
        routing_list = tuple(
            RoutingEntry(
                domain=_str(_get(e, "Domain", where), f"{where}.RoutingList.Domain"),
                action=_str(_get(e, "Action", where), f"{where}.RoutingList.Action"),
                host=_opt_str(e.get("Host"), f"{where}.RoutingList.Host") or "",
                always_relay=_bool(e.get("AlwaysRelay", False), f"{where}.RoutingList.AlwaysRelay"),
            )
            for e in entries
        )
    reroute = _get(routing, "RerouteIncoming", where)
    return Exchange55Relay(
        parameters_path=_str(_get(params, "Path", where), f"{where}.Parameters.Path"),
        relay_flags=_opt_int(params.get("RelayFlags"), f"{where}.RelayFlags"),
        relay_allow_list=_opt_strings(params.get("RelayAllowList"), f"{where}.RelayAllowList"),
        relay_deny_list=_opt_strings(params.get("RelayDenyList"), f"{where}.RelayDenyList"),
        relay_local_ip_list=_opt_strings(
            params.get("RelayLocalIPList"), f"{where}.RelayLocalIPList"
        ),
        routing_source=_str(_get(routing, "Source", where), f"{where}.Routing.Source"),
        reroute_incoming=None if reroute is None else _bool(reroute, f"{where}.RerouteIncoming"),
        routing_list=routing_list,
        service=_service(document.get("Service"), f"{where}.Service"),
        imc_file_version=_opt_str(document.get("ImcFileVersion"), f"{where}.ImcFileVersion"),
    )


def _each(value: Any, where: str, parse: Callable[[Any, str], T]) -> tuple[T, ...] | None:
    """A list of records parsed one by one; None (not read: unknown) stays None."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise FactsError(f"{where}: expected a list")
    return tuple(parse(item, where) for item in value)


def _connector(c: Any, where: str) -> ReceiveConnector:
    return ReceiveConnector(
        identity=_str(_get(c, "Identity", where), f"{where}.Identity"),
        name=_str(_get(c, "Name", where), f"{where}.Name"),
        server=_opt_str(c.get("Server"), f"{where}.Server"),
        bindings=_strings(c.get("Bindings"), f"{where}.Bindings"),
        remote_ip_ranges=_strings(c.get("RemoteIPRanges"), f"{where}.RemoteIPRanges"),
        permission_groups=flag_members(_opt_str(c.get("PermissionGroups"), where)),
        auth_mechanism=flag_members(_opt_str(c.get("AuthMechanism"), where)),
        transport_role=_opt_str(c.get("TransportRole"), f"{where}.TransportRole"),
        enabled=_bool(_get(c, "Enabled", where), f"{where}.Enabled"),
        fqdn=_opt_str(c.get("Fqdn"), f"{where}.Fqdn"),
        tarpit_interval=_opt_str(c.get("TarpitInterval"), f"{where}.TarpitInterval"),
        max_recipients_per_message=_opt_int(c.get("MaxRecipientsPerMessage"), where),
    )


def _accepted_domain(d: Any, where: str) -> AcceptedDomain:
    return AcceptedDomain(
        name=_str(_get(d, "Name", where), f"{where}.Name"),
        domain_name=_str(_get(d, "DomainName", where), f"{where}.DomainName"),
        domain_type=_str(_get(d, "DomainType", where), f"{where}.DomainType"),
        default=_bool(_get(d, "Default", where), f"{where}.Default"),
    )


def _transport_agent(a: Any, where: str) -> TransportAgent:
    return TransportAgent(
        identity=_str(_get(a, "Identity", where), f"{where}.Identity"),
        enabled=_bool(_get(a, "Enabled", where), f"{where}.Enabled"),
    )


def _recipient_filter(rf: Any, where: str) -> RecipientFilter | None:
    if rf is None:
        return None
    return RecipientFilter(
        enabled=_bool(_get(rf, "Enabled", where), f"{where}.Enabled"),
        recipient_validation_enabled=_bool(
            _get(rf, "RecipientValidationEnabled", where), f"{where}.RecipientValidationEnabled"
        ),
    )


def modern_relay_from(document: Any) -> ModernRelay:
    """The `modern.read_config` document as records; a key whose value is null (the cmdlet
    failed, or a capture lacks its file) is an unknown fact, a missing key a malformed one."""
    where = "modern.read_config"
    frontend = document.get("FrontendTransport")
    return ModernRelay(
        exchange_shell=_str(_get(document, "ExchangeShell", where), f"{where}.ExchangeShell"),
        server=_str(_get(document, "Server", where), f"{where}.Server"),
        receive_connectors=_each(
            _get(document, "ReceiveConnectors", where), f"{where}.ReceiveConnectors", _connector
        ),
        anonymous_permissions=_each(
            _get(document, "AnonymousPermissions", where),
            f"{where}.AnonymousPermissions",
            _ad_permission,
        ),
        accepted_domains=_each(
            _get(document, "AcceptedDomains", where), f"{where}.AcceptedDomains", _accepted_domain
        ),
        recipient_filter=_recipient_filter(_get(document, "RecipientFilterConfig", where), where),
        server_role=_opt_str(document.get("ServerRole"), f"{where}.ServerRole"),
        frontend_transport=None
        if frontend is None
        else _bool(frontend, f"{where}.FrontendTransport"),
        transport_agents=_each(
            document.get("TransportAgents"), f"{where}.TransportAgents", _transport_agent
        ),
    )


def _ad_permission(p: Any, where: str) -> AdPermission:
    return AdPermission(
        identity=_str(_get(p, "Identity", where), f"{where}.Identity"),
        user=_str(_get(p, "User", where), f"{where}.User"),
        extended_rights=_strings(p.get("ExtendedRights"), f"{where}.ExtendedRights"),
        access_rights=_strings(p.get("AccessRights"), f"{where}.AccessRights"),
        deny=_bool(_get(p, "Deny", where), f"{where}.Deny"),
        is_inherited=_bool(_get(p, "IsInherited", where), f"{where}.IsInherited"),
    )


def _explain(version: str | None, as_of: date, msexcimc: str | None) -> BuildExplanation | None:
    if version is None:
        return None
    try:
        return explain(version, as_of=as_of, msexcimc=msexcimc)
    except InvalidVersionError:
        return None


def _platform(build: BuildExplanation | None) -> Platform:
    if build is None or build.platform is None:
        return Platform.UNKNOWN
    return Platform(build.platform)


def facts_from_documents(
    host: str,
    detect: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    *,
    as_of: date,
) -> ExchangeFacts:
    """Typed facts from the `exchange.detect` document and the platform's read_config one."""
    notes: list[str] = []
    computer = _str(_get(detect, "ComputerName", "exchange.detect"), "ComputerName")
    reboot = bool(detect.get("RebootPending"))
    x55 = detect.get("Exchange55")
    x15 = detect.get("Exchange15")
    if x55 is not None:
        setup = dict(_get(x55, "SetupKey", "Exchange55"))
        imc_doc = x55.get("Imc")
        msexcimc = None if imc_doc is None else file_version_from(imc_doc, "Exchange55.Imc")
        newest = _opt_int(setup.get("NewestBuild"), "Exchange55.SetupKey.NewestBuild")
        # The service pack comes from the Setup key's build; the fix level only from the
        # IMS file (docs/sources.md#exchange55-setup-key: NewestBuild's semantics are unverified).
        version55 = None if newest is None else f"5.5.{newest}"
        if version55 is None:
            notes.append("the Exchange 5.5 Setup key has no NewestBuild: level unknown")
        if msexcimc is None:
            notes.append("msexcimc.exe was not found: the relay fix cannot be judged")
        build = _explain(version55, as_of, None if msexcimc is None else msexcimc.version)
        return ExchangeFacts(
            host=host,
            computer_name=computer,
            platform=Platform.EXCHANGE55,
            version=version55,
            build=build,
            msexcimc=msexcimc,
            exsetup=None,
            setup_key=setup,
            installed_updates=(),
            service=_service(x55.get("ImcService"), "Exchange55.ImcService"),
            reboot_pending=reboot,
            exchange55=None if config is None else exchange55_relay_from(config),
            modern=None,
            notes=tuple(notes),
        )
    if x15 is not None:
        setup = dict(_get(x15, "SetupKey", "Exchange15"))
        exsetup_doc = x15.get("ExSetup")
        exsetup = None if exsetup_doc is None else file_version_from(exsetup_doc, "ExSetup")
        if exsetup is not None:
            version: str | None = exsetup.version
        else:
            # HealthChecker's fallback: the Setup key (it stays at the CU after an SU).
            msi = [setup.get(k) for k in ("MsiProductMajor", "MsiProductMinor")]
            msi += [setup.get(k) for k in ("MsiBuildMajor", "MsiBuildMinor")]
            version = None if None in msi else ".".join(str(v) for v in msi)
            notes.append("ExSetup.exe was not found: the build comes from the v15 Setup key")
        build = _explain(version, as_of, None)
        updates = tuple(
            InstalledUpdate(
                key=_str(_get(u, "Key", "InstalledUpdates"), "InstalledUpdates.Key"),
                package_name=_opt_str(u.get("PackageName"), "InstalledUpdates.PackageName"),
                installed_date=_opt_str(u.get("InstalledDate"), "InstalledUpdates.InstalledDate"),
            )
            for u in x15.get("InstalledUpdates") or ()
        )
        return ExchangeFacts(
            host=host,
            computer_name=computer,
            platform=_platform(build),
            version=version,
            build=build,
            msexcimc=None,
            exsetup=exsetup,
            setup_key=setup,
            installed_updates=updates,
            service=_service(x15.get("TransportService"), "Exchange15.TransportService"),
            reboot_pending=reboot,
            exchange55=None,
            modern=None if config is None else modern_relay_from(config),
            notes=tuple(notes),
        )
    return ExchangeFacts(
        host=host,
        computer_name=computer,
        platform=Platform.UNKNOWN,
        version=None,
        build=None,
        msexcimc=None,
        exsetup=None,
        setup_key={},
        installed_updates=(),
        service=None,
        reboot_pending=reboot,
        exchange55=None,
        modern=None,
        notes=("no Exchange Setup key found: Exchange is not installed",),
    )


def config_op(detect: Mapping[str, Any]) -> str | None:
    """Which read_config op applies to a host, from its detect document."""
    if detect.get("Exchange55") is not None:
        return "exchange55.read_config"
    if detect.get("Exchange15") is not None:
        return "modern.read_config"
    return None


# --- I/O -------------------------------------------------------------------------------------


def _host_of(client: PayloadRunner) -> str:
    """The host a runner reaches (WinRMClient and SmbRunner: its options' host; the
    management-host runner: its target)."""
    target = getattr(client, "target", None)
    if isinstance(target, str):
        return target
    return str(getattr(getattr(client, "options", None), "host", "the host"))


def _run(client: PayloadRunner, op: str, params: Mapping[str, Any] | None = None) -> Any:
    document = client.run_payload(payloads.render(op, params or {}))
    if not isinstance(document, Mapping):
        raise FactsError(f"{_host_of(client)}: {op}: expected a JSON object")
    try:
        return capture.read_output(op, document)
    except capture.CaptureError as exc:
        raise FactsError(f"{_host_of(client)}: {exc}") from None


def collect_facts(client: PayloadRunner, *, as_of: date | None = None) -> ExchangeFacts:
    """Detect the server and read its relay configuration (read-only payloads only), over
    any channel (WinRM, SMB, a management host).

    Raises `TransportError` (host, step, cause) or `FactsError` (a malformed document)."""
    return collect_documents(client, as_of=as_of).facts


@dataclass(frozen=True)
class Collected:
    """Facts and the documents they were made of: `exchange.detect`, and the platform's
    read_config (None when the host has no Exchange)."""

    facts: ExchangeFacts
    detect: Mapping[str, Any]
    config: Mapping[str, Any] | None


def collect_documents(client: PayloadRunner, *, as_of: date | None = None) -> Collected:
    """`collect_facts`, keeping the documents read (exchange_batch's detect plans the relay
    changes from them instead of reading the host again)."""
    host = _host_of(client)
    detect = _run(client, "exchange.detect")
    op = config_op(detect)
    config = None if op is None else _run(client, op)
    try:
        facts = facts_from_documents(host, detect, config, as_of=as_of or date.today())
    except (AttributeError, TypeError) as exc:  # a list where a mapping belongs, and so on
        raise FactsError(f"{host}: unexpected document shape ({exc})") from None
    return Collected(facts, detect, config)


def file_version(client: PayloadRunner, path: str) -> FileVersion:
    """The version resource of one file on the host (`exchange.file_version`)."""
    return file_version_from(_run(client, "exchange.file_version", {"Path": path}), path)
