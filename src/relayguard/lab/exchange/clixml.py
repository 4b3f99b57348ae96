"""What the Exchange 2013+ twin's cmdlets return, serialised as PowerShell serialises them.

`modern.read_config` on a real server prints each object of `Get-ReceiveConnector`,
`Get-AcceptedDomain`, `Get-ADPermission` (selected as the payload selects it),
`Get-ExchangeServer`, `Get-TransportAgent` and `Get-RecipientFilterConfig` as one CLIXML
document (`[PSSerializer]::Serialize($object, 2)`, what Export-Clixml writes per object:
docs/sources.md#ms-psrp-clixml). The twin builds objects of the same type names and property
shapes as Microsoft's captures of a real Exchange 2019 server (tests/exchange/captures/E19) and
serialises them with psrpcore, a library nobody here wrote, so the controller parses the twin
with the same code as a real server's output and an admin's capture.

What the twin leaves out: properties relayguard does not read, and the integer value beside an
enum's name (a real server writes `<ToString>` and `<I32>`; the twin writes `<ToString>` only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psrpcore.types import PSList, PSNoteProperty, PSObject, serialize_clixml

from relayguard.lab.exchange import smtp_modern as em
from relayguard.lab.exchange.state import AcceptedDomain, ExchangeModern, ReceiveConnector

_DATA = "Microsoft.Exchange.Data"
_CONFIG = "Microsoft.Exchange.Data.Directory.SystemConfiguration"
_AD_OBJECT = (
    f"{_CONFIG}.ADConfigurationObject",
    f"{_DATA}.Directory.ADObject",
    f"{_DATA}.Directory.ADRawEntry",
    f"{_DATA}.ConfigurableObject",
)
_ASSEMBLY = (
    "Microsoft.Exchange.Data, Version=15.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
)


def _obj(type_names: Sequence[str], text: str | None, **props: Any) -> PSObject:
    """A PSObject with .NET type names, a ToString and adapted properties."""
    obj = PSObject()
    obj.PSObject.type_names = [*type_names, "System.Object"]
    if text is not None:
        obj.PSObject.to_string = text
    for name, value in props.items():
        obj.PSObject.adapted_properties.append(PSNoteProperty(name, value))
    return obj


def _enum(type_name: str, text: str) -> PSObject:
    return _obj((type_name, "System.Enum", "System.ValueType"), text)


def _flags(type_name: str, values: Iterable[str], order: tuple[str, ...]) -> PSObject:
    """A [Flags] enum: ToString() lists the members in declaration order, "None" when empty."""
    present = [v for v in order if v in values and v != "None"]
    return _enum(type_name, ", ".join(present) if present else "None")


def _multi(item_type: str, texts: Iterable[str]) -> PSList:
    """A MultiValuedProperty<T>: a list (<LST>) of objects known by their ToString()."""
    items = PSList(_obj((f"{_DATA}.{item_type}",), text) for text in texts)
    items.PSObject.type_names = [
        f"{_DATA}.MultiValuedProperty`1[[{_DATA}.{item_type}, {_ASSEMBLY}]]",
        f"{_DATA}.MultiValuedPropertyBase",
        "System.Object",
    ]
    return items


def _ad_id(text: str, dn: str) -> PSObject:
    return _obj((f"{_DATA}.Directory.ADObjectId", f"{_DATA}.ObjectId"), text, DistinguishedName=dn)


def _connector_dn(m: ExchangeModern, conn: ReceiveConnector) -> str:
    return (
        f"CN={conn.Name},CN=SMTP Receive Connectors,CN=Protocols,CN={m.ServerName},"
        "CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),"
        "CN=Administrative Groups,CN=First Organization,CN=Microsoft Exchange,CN=Services,"
        "CN=Configuration,DC=corp,DC=example"
    )


def identity(m: ExchangeModern, conn: ReceiveConnector) -> str:
    return f"{m.ServerName}\\{conn.Name}"


def receive_connector(m: ExchangeModern, conn: ReceiveConnector) -> PSObject:
    """One `Get-ReceiveConnector` object (type and property shapes as in E19's capture)."""
    return _obj(
        (f"{_CONFIG}.ReceiveConnector", *_AD_OBJECT),
        identity(m, conn),
        Identity=_ad_id(identity(m, conn), _connector_dn(m, conn)),
        Name=conn.Name,
        Server=_ad_id(m.ServerName, f"CN={m.ServerName},CN=Servers"),
        Bindings=_multi("IPBinding", conn.Bindings),
        RemoteIPRanges=_multi("IPRange", conn.RemoteIPRanges),
        PermissionGroups=_flags(
            f"{_DATA}.PermissionGroups", conn.PermissionGroups, em.PERMISSION_GROUPS
        ),
        AuthMechanism=_flags(f"{_CONFIG}.AuthMechanisms", conn.AuthMechanism, em.AUTH_MECHANISMS),
        TransportRole=_enum(f"{_CONFIG}.ServerRole", conn.TransportRole),
        Enabled=conn.Enabled,
        Fqdn=_obj((f"{_DATA}.Fqdn", f"{_DATA}.SmtpDomain"), conn.Fqdn) if conn.Fqdn else None,
        TarpitInterval=_obj((f"{_DATA}.EnhancedTimeSpan", "System.ValueType"), conn.TarpitInterval),
        MaxRecipientsPerMessage=conn.MaxRecipientsPerMessage,
        DistinguishedName=_connector_dn(m, conn),
    )


def anonymous_permissions(m: ExchangeModern, conn: ReceiveConnector) -> list[PSObject]:
    """`Get-ADPermission -User "NT AUTHORITY\\ANONYMOUS LOGON"` of one connector, selected as
    the read payload and the collector select it (a PSCustomObject per ACE)."""
    out = []
    for ace in conn.Permissions:
        if ace.User.lower() != em.ANONYMOUS.lower():
            continue
        out.append(
            _obj(
                ("System.Management.Automation.PSCustomObject",),
                None,
                Identity=identity(m, conn),
                User=ace.User,
                ExtendedRights=PSList(ace.ExtendedRights),
                AccessRights=PSList(["ExtendedRight"]),
                Deny=ace.Deny,
                IsInherited=ace.IsInherited,
            )
        )
    return out


def accepted_domain(domain: AcceptedDomain) -> PSObject:
    name = _obj((f"{_DATA}.SmtpDomainWithSubdomains",), domain.DomainName)
    return _obj(
        (f"{_CONFIG}.AcceptedDomain", *_AD_OBJECT),
        domain.Name,
        Name=domain.Name,
        DomainName=name,
        DomainType=_enum(f"{_CONFIG}.AcceptedDomainType", domain.DomainType),
        Default=domain.Default,
    )


def exchange_server(m: ExchangeModern) -> PSObject:
    build = [int(p) for p in m.SetupVersion.split(".")]
    return _obj(
        (f"{_DATA}.Directory.Management.ExchangeServer",),
        m.ServerName,
        Name=m.ServerName,
        Fqdn=m.Fqdn,
        ServerRole=_enum(f"{_CONFIG}.ServerRole", m.ServerRole),
        AdminDisplayVersion=_obj(
            (f"{_DATA}.ServerVersion",),
            f"Version {build[0]}.{build[1]} (Build {build[2]}.{build[3]})",
        ),
    )


def serialised(objects: Iterable[PSObject]) -> list[str]:
    """One CLIXML document per object, as `[PSSerializer]::Serialize($object, 2)` prints."""
    return [serialize_clixml(obj, None) for obj in objects]  # type: ignore[arg-type]


def sections(m: ExchangeModern) -> dict[str, list[str]]:
    """Every cmdlet's objects, by the capture file's kind (ReceiveConnector, ...)."""
    agents = (
        _obj(
            (f"{_DATA}.Transport.TransportAgent",),
            a.Identity,
            Identity=a.Identity,
            Enabled=a.Enabled,
        )
        for a in m.TransportAgents
    )
    rfc = m.RecipientFilter
    filter_config = _obj(
        (f"{_DATA}.Directory.SystemConfiguration.RecipientFilterConfig",),
        "RecipientFilterConfig",
        Enabled=rfc.Enabled,
        RecipientValidationEnabled=rfc.RecipientValidationEnabled,
    )
    return {
        "ExchangeServer": serialised([exchange_server(m)]),
        "ReceiveConnector": serialised(receive_connector(m, c) for c in m.ReceiveConnectors),
        "AcceptedDomain": serialised(accepted_domain(d) for d in m.AcceptedDomains),
        "ADPermission": serialised(
            p for c in m.ReceiveConnectors for p in anonymous_permissions(m, c)
        ),
        "TransportAgent": serialised(agents),
        "RecipientFilterConfig": serialised([filter_config]),
    }
