"""Builders of twin state documents: realistic Exchange servers in a named configuration.

A profile is a recipe for one kind of misconfigured (or compliant) server, as found in the
field; the default fleet and `--hosts` specs are made of them (see `fleet`).
Versions are from KB Q158530 for 5.5 (docs/sources.md#kb-q158530) and HealthChecker's examples
for 15.x (docs/sources.md#healthchecker-build-detection).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from relayguard.lab.exchange.smtp_modern import (
    ACCEPT_ANY_RECIPIENT,
    ANONYMOUS,
    canonicalize,
    group_permissions,
)
from relayguard.lab.exchange.state import (
    AcceptedDomain,
    AdPermission,
    Exchange55,
    ExchangeModern,
    ImsParameters,
    ImsRouting,
    LabKnobs,
    ReceiveConnector,
    RecipientFilterConfig,
    RoutingEntry,
    ServiceState,
    TransportAgent,
    TwinState,
)
from relayguard.vocabulary import Platform

ORG_DOMAIN = "corp.example"  # RFC 2606 name: never a real organisation
# The allowed application servers of the lab (a vantage point inside the fleet's range).
TRUSTED_NETWORK = "127.0.59.0/24"
TRUSTED_NET_MASK = "127.0.59.0;255.255.255.0"
TOO_WIDE_NET_MASK = "127.0.0.0;255.0.0.0"  # every loopback address: "the whole /8"

ALL_IPV4 = "0.0.0.0-255.255.255.255"
ALL_IPV6 = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

# The four-part builds real 5.5 servers report per service pack (KB Q158530 gives the first
# three; docs/sources.md#exchange55-four-part-builds): SP2 5.5.2448.4, SP3 5.5.2650.21, SP4
# 5.5.2653.23. msexcimc.exe carries the same build; whether it has the relay fix is decided by
# the product's catalog (MS99-027: msexcimc.exe 5.5.2650.1 or later, KB Q237927), not here.
EX55_BUILDS = {2: "5.5.2448.4", 3: "5.5.2650.21", 4: "5.5.2653.23"}
EX55_IMC_VERSIONS = dict(EX55_BUILDS)

MODERN_VERSIONS = {
    Platform.EXCHANGE2013: "15.0.1497.2",  # 2013 CU23
    Platform.EXCHANGE2016: "15.1.2507.6",  # 2016 CU23
    Platform.EXCHANGE2019: "15.2.1544.4",  # 2019 CU14
    Platform.EXCHANGESE: "15.2.2562.17",  # Subscription Edition RTM (lab value)
}
EX2019_CU15 = "15.2.1748.10"
# The newest update of each product's newest CU, as builds.yml has them (CSS-Exchange
# HealthChecker's build dictionary, docs/sources.md#healthchecker-build-detection): what a
# `compliant` twin runs. The lab's packages (packages.py) bring the other twins there.
NEWEST_VERSIONS = {
    Platform.EXCHANGE2013: "15.0.1497.48",  # 2013 CU23 Mar23SU
    Platform.EXCHANGE2016: "15.1.2507.75",  # 2016 CU23 Sep26SUv2
    Platform.EXCHANGE2019: "15.2.1748.53",  # 2019 CU15 Sep26SUv2
    Platform.EXCHANGESE: "15.2.2562.53",  # SE RTM Sep26SUv2
}


@dataclass(frozen=True)
class TwinSpec:
    """Everything a builder needs to know about one host of the fleet."""

    name: str
    server: str  # NetBIOS-style server name, e.g. EX19A
    address: str
    smtp_password: str = ""  # the 5.5 IMS AUTH LOGIN account (relayuser)
    knobs: LabKnobs | None = None


def _service(name: str, display: str) -> ServiceState:
    return ServiceState(Name=name, DisplayName=display)


def _mailboxes() -> list[str]:
    return [f"{u}@{ORG_DOMAIN}" for u in ("administrator", "postmaster", "alice", "bob")]


def _state(spec: TwinSpec, platform: Platform, **kw: object) -> TwinState:
    state = TwinState(name=spec.name, platform=platform.value, address=spec.address)
    if "exchange55" in kw:
        state.exchange55 = kw["exchange55"]  # type: ignore[assignment]
    if "modern" in kw:
        state.modern = kw["modern"]  # type: ignore[assignment]
        assert state.modern is not None
        canonicalize(state.modern)
    state.lab = spec.knobs or LabKnobs()
    state.lab.baseline_fingerprint = state.relay_fingerprint()
    return state


# ------------------------------------------------------------------ Exchange 5.5


def exchange55(
    spec: TwinSpec,
    *,
    service_pack: int,
    reroute: bool,
    params: ImsParameters,
) -> TwinState:
    fqdn = f"{spec.server.lower()}.{ORG_DOMAIN}"
    accounts = {}
    if spec.smtp_password:
        accounts["relayuser"] = hashlib.sha256(spec.smtp_password.encode()).hexdigest()
    x = Exchange55(
        ServerName=spec.server,
        Fqdn=fqdn,
        LocalDomain=ORG_DOMAIN,
        ProductVersion=EX55_BUILDS[service_pack],
        ServicePack=service_pack,
        InstallPath="C:\\exchsrvr",
        ImcFileVersion=EX55_IMC_VERSIONS[service_pack],
        Parameters=params,
        Routing=ImsRouting(
            RerouteIncoming=reroute,
            RoutingList=[RoutingEntry(Domain=ORG_DOMAIN, Action="Inbound")] if reroute else [],
        ),
        Service=_service("MSExchangeIMC", "Microsoft Exchange Internet Mail Service"),
        Mailboxes=_mailboxes(),
        SmtpAccounts=accounts,
    )
    x.Running = x.snapshot()
    return _state(spec, Platform.EXCHANGE55, exchange55=x)


def ex55_sp2_noreroute(spec: TwinSpec) -> TwinState:
    """5.5 SP2 without the MS99-027 fix, "Do not reroute": 250 for everything, NDR later."""
    return exchange55(spec, service_pack=2, reroute=False, params=ImsParameters())


def ex55_sp2_reroute_open(spec: TwinSpec) -> TwinState:
    """5.5 SP2 rerouting without routing restrictions: relays for everyone."""
    return exchange55(spec, service_pack=2, reroute=True, params=ImsParameters())


def ex55_sp3_wide_allow(spec: TwinSpec) -> TwinState:
    """5.5 SP3 with routing restrictions whose allow list covers every client."""
    params = ImsParameters(
        RelayFlags=2 | 8,
        RelayAllowList=[TOO_WIDE_NET_MASK],
        RelayDenyList=[],
        RelayLocalIPList=[],
    )
    return exchange55(spec, service_pack=3, reroute=True, params=params)


def ex55_sp4_closed(spec: TwinSpec) -> TwinState:
    """5.5 SP4 rerouting with inbound domains, allow list of the app servers + authenticated."""
    params = ImsParameters(
        RelayFlags=2 | 8,
        RelayAllowList=[TRUSTED_NET_MASK],
        RelayDenyList=[],
        RelayLocalIPList=[],
    )
    return exchange55(spec, service_pack=4, reroute=True, params=params)


# ------------------------------------------------------------------ Exchange 2013+


def default_connectors(server: str, fqdn: str) -> list[ReceiveConnector]:
    """The five receive connectors setup creates on a Mailbox server (learn.microsoft.com,
    "Default Receive connectors created during setup")."""
    everyone = [ALL_IPV6, ALL_IPV4]
    auth = ["Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer"]

    def conn(
        name: str, port: int, groups: list[str], mech: list[str], role: str
    ) -> ReceiveConnector:
        return ReceiveConnector(
            Name=f"{name} {server}",
            Bindings=[f"[::]:{port}", f"0.0.0.0:{port}"],
            RemoteIPRanges=list(everyone),
            PermissionGroups=groups,
            AuthMechanism=mech,
            TransportRole=role,  # type: ignore[arg-type]
            Fqdn=fqdn,
            Permissions=group_permissions(groups),
        )

    return [
        conn(
            "Default",
            2525,
            ["ExchangeUsers", "ExchangeServers", "ExchangeLegacyServers"],
            auth,
            "HubTransport",
        ),
        conn("Client Proxy", 465, ["ExchangeUsers", "ExchangeServers"], auth, "HubTransport"),
        conn(
            "Default Frontend",
            25,
            ["AnonymousUsers", "ExchangeServers", "ExchangeLegacyServers"],
            auth,
            "FrontendTransport",
        ),
        conn("Outbound Proxy Frontend", 717, ["ExchangeServers"], auth, "FrontendTransport"),
        conn("Client Frontend", 587, ["ExchangeUsers"], auth[:4], "FrontendTransport"),
    ]


# Get-TransportAgent on a Mailbox server: the built-in agents, and the anti-spam agents that
# Install-AntiSpamAgents.ps1 adds (docs/sources.md#learn-antispam-mailbox-servers). The lab's
# servers are ones whose admin ran that script; `without_antispam` makes one that did not.
BUILT_IN_AGENTS = ("Transport Rule Agent", "Malware Agent")
ANTISPAM_AGENTS = (
    "Content Filter Agent",
    "Sender Id Agent",
    "Sender Filter Agent",
    "Recipient Filter Agent",
    "Protocol Analysis Agent",
)


def without_antispam(m: ExchangeModern) -> ExchangeModern:
    m.TransportAgents = [a for a in m.TransportAgents if a.Identity not in ANTISPAM_AGENTS]
    return m


def modern(spec: TwinSpec, version: str, platform: Platform) -> ExchangeModern:
    fqdn = f"{spec.server.lower()}.{ORG_DOMAIN}"
    _ = platform
    return ExchangeModern(
        ServerName=spec.server,
        Fqdn=fqdn,
        ExSetupVersion=version,
        SetupVersion=version,
        InstallPath="C:\\Program Files\\Microsoft\\Exchange Server\\V15\\",
        ReceiveConnectors=default_connectors(spec.server, fqdn),
        AcceptedDomains=[AcceptedDomain(Name=ORG_DOMAIN, DomainName=ORG_DOMAIN, Default=True)],
        RecipientFilter=RecipientFilterConfig(Enabled=True, RecipientValidationEnabled=False),
        Service=_service("MSExchangeFrontEndTransport", "Microsoft Exchange Frontend Transport"),
        Mailboxes=_mailboxes(),
        # 2013 servers of the lab are multi-role (Mailbox and Client Access), as Microsoft
        # recommends; 2016+ has only the Mailbox role, which holds the front end.
        ServerRole="Mailbox, ClientAccess" if version.startswith("15.0.") else "Mailbox",
        TransportAgents=[TransportAgent(a) for a in (*BUILT_IN_AGENTS, *ANTISPAM_AGENTS)],
    )


def anonymous_relay_ace() -> AdPermission:
    """`Add-ADPermission -User "NT AUTHORITY\\ANONYMOUS LOGON" -ExtendedRights
    ms-Exch-SMTP-Accept-Any-Recipient` (docs/sources.md#learn-anonymous-relay)."""
    return AdPermission(User=ANONYMOUS, ExtendedRights=[ACCEPT_ANY_RECIPIENT])


def frontend(m: ExchangeModern) -> ReceiveConnector:
    return next(c for c in m.ReceiveConnectors if c.Name.startswith("Default Frontend "))


def modern_anon_relay(spec: TwinSpec, platform: Platform) -> TwinState:
    """Anonymous relay granted on the default frontend connector (the classic mistake)."""
    m = modern(spec, MODERN_VERSIONS[platform], platform)
    frontend(m).Permissions.append(anonymous_relay_ace())
    return _state(spec, platform, modern=m)


def modern_star_domain(spec: TwinSpec, platform: Platform) -> TwinState:
    """An ExternalRelay accepted domain `*`: the organisation relays for everyone."""
    m = modern(spec, MODERN_VERSIONS[platform], platform)
    m.AcceptedDomains.append(AcceptedDomain(Name="All", DomainName="*", DomainType="ExternalRelay"))
    return _state(spec, platform, modern=m)


def modern_compliant(spec: TwinSpec, platform: Platform) -> TwinState:
    """A dedicated relay connector for the app servers only; validation on; the newest CU at
    its newest update."""
    return _closed_relay(spec, platform, NEWEST_VERSIONS[platform])


def modern_closed_unpatched(spec: TwinSpec, platform: Platform) -> TwinState:
    """The relay configuration of `compliant`, on a CU without any of its updates (2019:
    CU15's own build 15.2.1748.10): the patch level is behind, the relay closed."""
    version = EX2019_CU15 if platform == Platform.EXCHANGE2019 else MODERN_VERSIONS[platform]
    return _closed_relay(spec, platform, version)


def _closed_relay(spec: TwinSpec, platform: Platform, version: str) -> TwinState:
    m = modern(spec, version, platform)
    m.RecipientFilter.RecipientValidationEnabled = True
    relay = ReceiveConnector(
        Name=f"Relay {spec.server}",
        Bindings=["0.0.0.0:25"],
        RemoteIPRanges=[TRUSTED_NETWORK],
        PermissionGroups=["AnonymousUsers"],
        AuthMechanism=["Tls"],
        TransportRole="FrontendTransport",
        Fqdn=m.Fqdn,
        Permissions=[*group_permissions(["AnonymousUsers"]), anonymous_relay_ace()],
    )
    m.ReceiveConnectors.append(relay)
    return _state(spec, platform, modern=m)


Builder = Callable[[TwinSpec, Platform], TwinState]

PROFILES: dict[str, Builder] = {
    "sp2-noreroute": lambda s, p: ex55_sp2_noreroute(s),
    "sp2-reroute-open": lambda s, p: ex55_sp2_reroute_open(s),
    "sp3-wide-allow": lambda s, p: ex55_sp3_wide_allow(s),
    "sp4-closed": lambda s, p: ex55_sp4_closed(s),
    "anon-relay": modern_anon_relay,
    "star-domain": modern_star_domain,
    "compliant": modern_compliant,
    "closed-unpatched": modern_closed_unpatched,
}

EX55_PROFILES = ("sp2-noreroute", "sp2-reroute-open", "sp3-wide-allow", "sp4-closed")
MODERN_PROFILES = ("anon-relay", "star-domain", "compliant")  # what `--hosts kind:N` cycles
# named only (`--hosts exchange2019/closed-unpatched:1`, the default fleet's ex2019-compliant)
MODERN_NAMED_PROFILES = (*MODERN_PROFILES, "closed-unpatched")


def build(profile: str, spec: TwinSpec, platform: Platform) -> TwinState:
    allowed = EX55_PROFILES if platform == Platform.EXCHANGE55 else MODERN_NAMED_PROFILES
    if profile not in allowed:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(allowed)}")
    return PROFILES[profile](spec, platform)
