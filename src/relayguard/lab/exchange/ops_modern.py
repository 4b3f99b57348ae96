"""Payload ops of the Exchange 2013+ twin: receive connectors, permissions, accepted domains.

`modern.read_config` prints what `Get-ReceiveConnector`, `Get-ADPermission -User "NT
AUTHORITY\\ANONYMOUS LOGON"`, `Get-AcceptedDomain`, `Get-ExchangeServer`,
`Get-TransportAgent` and `Get-RecipientFilterConfig` return, each object serialised as
PowerShell serialises it (CLIXML, `relayguard.lab.exchange.clixml`). `modern.write_config`
runs a list of cmdlet calls in order, as a script with `-ErrorAction Stop` would: each call's
effect is kept when a later one fails. Shapes: docs/payloads.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relayguard.lab.exchange import clixml
from relayguard.lab.exchange import smtp_modern as em
from relayguard.lab.exchange.oplib import TwinContext, fail, require_modern
from relayguard.lab.exchange.state import (
    AcceptedDomain,
    AdPermission,
    ExchangeModern,
    ReceiveConnector,
    TwinState,
)
from relayguard.vocabulary import RECEIVE_CONNECTOR_PROPERTIES

KNOWN_RIGHTS = (
    em.SUBMIT,
    em.ACCEPT_ANY_RECIPIENT,
    em.ACCEPT_ANY_SENDER,
    em.ACCEPT_AUTHORITATIVE_SENDER,
    em.ACCEPT_HEADERS_ROUTING,
    em.BYPASS_ANTISPAM,
    "ms-Exch-SMTP-Accept-Authoritative-Domain",
    "ms-Exch-SMTP-Accept-Authentication-Flag",
    "ms-Exch-SMTP-Accept-Exch50",
    "ms-Exch-Bypass-Message-Size-Limit",
    "ms-Exch-SMTP-Send-Exch50",
)
DOMAIN_TYPES = ("Authoritative", "InternalRelay", "ExternalRelay")
TRANSPORT_ROLES = ("FrontendTransport", "HubTransport")
DC = "dc01.corp.example"


# ------------------------------------------------------------------ read


def identity(m: ExchangeModern, conn: ReceiveConnector) -> str:
    return clixml.identity(m, conn)


def read_document(m: ExchangeModern) -> dict[str, Any]:
    """What `modern.read_config` prints: which shell it loaded, the server, whether the Front
    End Transport service exists, and each cmdlet's objects as CLIXML (`clixml.sections`)."""
    return {
        "ExchangeShell": "SnapIn",
        "Server": m.ServerName,
        "FrontendTransport": m.frontend_transport,
        "Clixml": clixml.sections(m),
    }


def read_config(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    # the same state reads the same: detect, then apply's first read, an audit after a change
    return ctx.store.derived(
        "modern.read_config", lambda state: read_document(require_modern(state))
    )


# ------------------------------------------------------------------ write


def write_config(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    actions = params.get("Actions")
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        fail("Cannot bind argument to parameter 'Actions' because it is not a list of objects.")
    applied: list[dict[str, str]] = []
    for action in actions:
        cmdlet = action.get("Cmdlet")
        runner = CMDLETS.get(str(cmdlet))
        if runner is None:
            fail(
                f"The term '{cmdlet}' is not recognized as the name of a cmdlet, function, "
                "script file, or operable program."
            )
        args = {k: v for k, v in action.items() if k != "Cmdlet"}

        def run(state: TwinState, runner: Cmdlet = runner, args: dict[str, Any] = args) -> str:
            m = require_modern(state)
            target = runner(m, args)
            em.canonicalize(m)
            return target

        target = ctx.store.update(run)  # each call persists before the next one runs
        applied.append({"Cmdlet": str(cmdlet), "Identity": target})
    return {"Shell": "SnapIn", "Applied": applied}


Cmdlet = Callable[[ExchangeModern, dict[str, Any]], str]


def _find_connector(m: ExchangeModern, ident: Any) -> ReceiveConnector:
    text = str(ident or "")
    for conn in m.ReceiveConnectors:
        if text.lower() in (conn.Name.lower(), identity(m, conn).lower()):
            return conn
    fail(
        f"The operation couldn't be performed because object '{text}' couldn't be found on '{DC}'."
    )


def _find_domain(m: ExchangeModern, ident: Any) -> AcceptedDomain:
    text = str(ident or "").lower()
    for domain in m.AcceptedDomains:
        if text in (domain.Name.lower(), domain.DomainName.lower()):
            return domain
    fail(
        f"The operation couldn't be performed because object '{ident}' couldn't be found on '{DC}'."
    )


def _check_args(cmdlet: str, args: dict[str, Any], allowed: set[str]) -> None:
    for name in args:
        if name not in allowed:
            fail(f"{cmdlet} : A parameter cannot be found that matches parameter name '{name}'.")


def _string_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(f"Cannot process argument transformation on parameter '{name}'.")
    return [v.strip() for v in value]


def _flags(name: str, value: Any, members: tuple[str, ...]) -> list[str]:
    items = _string_list(name, value)
    parts = [p.strip() for item in items for p in item.split(",") if p.strip()]
    out = []
    for part in parts:
        match = next((m for m in members if m.lower() == part.lower()), None)
        if match is None:
            fail(
                f"Cannot process argument transformation on parameter '{name}'. Cannot convert "
                f'value "{part}" to type "{name}". Error: "Unable to match the identifier name '
                f"{part} to a valid enumerator name. Specify one of the following enumerator "
                f'names and try again: {", ".join(members)}"'
            )
        if match != "None" and match not in out:
            out.append(match)
    return out


def _bindings(value: Any) -> list[str]:
    items = _string_list("Bindings", value)
    for item in items:
        try:
            em.parse_binding(item)
        except ValueError:
            fail(
                "Cannot process argument transformation on parameter 'Bindings'. Cannot convert "
                f'value "{item}" to type "Microsoft.Exchange.Data.IPBinding".'
            )
    if not items:
        fail("The Bindings parameter can't be empty.")
    return items


def _ranges(value: Any) -> list[str]:
    items = _string_list("RemoteIPRanges", value)
    for item in items:
        try:
            em.parse_remote_range(item)
        except ValueError:
            fail(
                "Cannot process argument transformation on parameter 'RemoteIPRanges'. Cannot "
                f'convert value "{item}" to type "Microsoft.Exchange.Data.IPRange". Error: '
                f"\"'{item}' isn't a valid IP address range.\""
            )
    if not items:
        fail("The RemoteIPRanges parameter can't be empty.")
    return items


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        fail(f'Cannot convert value "{value}" to type "System.Boolean" for parameter {name}.')
    return value


def _timespan(value: Any) -> str:
    text = str(value)
    parts = text.split(":")
    if len(parts) != 3 or not all(p.replace(".", "", 1).isdigit() for p in parts):
        fail(f'Cannot convert value "{value}" to type "Microsoft.Exchange.Data.EnhancedTimeSpan".')
    return text


def _check_consistency(m: ExchangeModern, conn: ReceiveConnector) -> None:
    if "ExternalAuthoritative" in conn.AuthMechanism and (
        "ExchangeServers" not in conn.PermissionGroups
    ):
        fail(
            "The ExternalAuthoritative authentication mechanism requires the ExchangeServers "
            "permission group to be set on the Receive connector."
        )
    for other in m.ReceiveConnectors:
        if other is conn or other.TransportRole != conn.TransportRole:
            continue
        if _bindings_overlap(conn, other) and set(conn.RemoteIPRanges) & set(other.RemoteIPRanges):
            fail(
                "The values that you specified for the Bindings and RemoteIPRanges parameters "
                f'conflict with the settings on Receive connector "{identity(m, other)}". '
                "Receive connectors assigned to the same server must listen on unique local IP "
                "address & port bindings, or must accept mail from unique remote IP address "
                "ranges."
            )


def _bindings_overlap(a: ReceiveConnector, b: ReceiveConnector) -> bool:
    for x in a.Bindings:
        for y in b.Bindings:
            (hx, px), (hy, py) = em.parse_binding(x), em.parse_binding(y)
            if px == py and (hx == hy or hx in ("0.0.0.0", "::") or hy in ("0.0.0.0", "::")):
                v4x, v4y = ":" not in hx, ":" not in hy
                if v4x == v4y:
                    return True
    return False


_CONNECTOR_PROPS = set(RECEIVE_CONNECTOR_PROPERTIES)


def _apply_connector_props(conn: ReceiveConnector, args: dict[str, Any]) -> None:
    if "Bindings" in args:
        conn.Bindings = _bindings(args["Bindings"])
    if "RemoteIPRanges" in args:
        conn.RemoteIPRanges = _ranges(args["RemoteIPRanges"])
    if "AuthMechanism" in args:
        conn.AuthMechanism = _flags("AuthMechanism", args["AuthMechanism"], em.AUTH_MECHANISMS)
    if "Enabled" in args:
        conn.Enabled = _bool("Enabled", args["Enabled"])
    if "Fqdn" in args:
        conn.Fqdn = str(args["Fqdn"])
    if "TarpitInterval" in args:
        conn.TarpitInterval = _timespan(args["TarpitInterval"])
    if "MaxRecipientsPerMessage" in args:
        value = args["MaxRecipientsPerMessage"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 512000:
            fail(f'Cannot convert value "{value}" for parameter MaxRecipientsPerMessage.')
        conn.MaxRecipientsPerMessage = value
    if "PermissionGroups" in args:
        groups = _flags("PermissionGroups", args["PermissionGroups"], em.PERMISSION_GROUPS)
        # Exchange rewrites the ACEs of the groups that were removed or added.
        old_aces = em.group_permissions(conn.PermissionGroups)
        kept = [p for p in conn.Permissions if p not in old_aces]
        conn.PermissionGroups = groups
        conn.Permissions = em.group_permissions(groups) + kept


def new_receive_connector(m: ExchangeModern, args: dict[str, Any]) -> str:
    _check_args("New-ReceiveConnector", args, _CONNECTOR_PROPS | {"Name", "TransportRole"})
    name = str(args.get("Name") or "").strip()
    if not name or any(c in name for c in "\\/"):
        fail(f"The name '{name}' isn't valid for a Receive connector.")
    if any(c.Name.lower() == name.lower() for c in m.ReceiveConnectors):
        fail(f"A Receive connector with the name '{name}' already exists on server {m.ServerName}.")
    role = args.get("TransportRole", "FrontendTransport")
    if role not in TRANSPORT_ROLES:
        fail(f'Cannot convert value "{role}" to type "ServerRole" for parameter TransportRole.')
    if role == "FrontendTransport" and not m.frontend_transport:
        # A 2013 Mailbox-only server has no Front End Transport service.
        fail(f"The Front End Transport service isn't installed on server {m.ServerName}.")
    for required in ("Bindings", "RemoteIPRanges"):
        if required not in args:
            fail(f"New-ReceiveConnector : The {required} parameter is required.")
    conn = ReceiveConnector(
        Name=name,
        Bindings=[],
        RemoteIPRanges=[],
        PermissionGroups=[],
        AuthMechanism=["Tls"],
        TransportRole=role,
        Fqdn=m.Fqdn,
    )
    _apply_connector_props(conn, args)
    m.ReceiveConnectors.append(conn)
    _check_consistency(m, conn)
    return identity(m, conn)


def set_receive_connector(m: ExchangeModern, args: dict[str, Any]) -> str:
    _check_args("Set-ReceiveConnector", args, _CONNECTOR_PROPS | {"Identity"})
    conn = _find_connector(m, args.get("Identity"))
    _apply_connector_props(conn, args)
    _check_consistency(m, conn)
    return identity(m, conn)


def remove_receive_connector(m: ExchangeModern, args: dict[str, Any]) -> str:
    _check_args("Remove-ReceiveConnector", args, {"Identity"})
    conn = _find_connector(m, args.get("Identity"))
    m.ReceiveConnectors.remove(conn)
    return identity(m, conn)


def _ace_args(cmdlet: str, args: dict[str, Any]) -> tuple[str, list[str], bool]:
    _check_args(cmdlet, args, {"Identity", "User", "ExtendedRights", "Deny"})
    user = args.get("User")
    if not isinstance(user, str) or "\\" not in user:
        fail(f"{cmdlet} : The user or group '{user}' couldn't be found.")
    rights = []
    for right in _string_list("ExtendedRights", args.get("ExtendedRights", [])):
        match = next((k for k in KNOWN_RIGHTS if k.lower() == right.lower()), None)
        if match is None:
            fail(f"{cmdlet} : The extended right '{right}' couldn't be found.")
        rights.append(match)
    if not rights:
        fail(f"{cmdlet} : The ExtendedRights parameter is required.")
    deny = _bool("Deny", args.get("Deny", False))
    canonical = next(
        (u for u in (em.ANONYMOUS, em.AUTHENTICATED) if u.lower() == user.lower()), user
    )
    return canonical, rights, deny


def add_ad_permission(m: ExchangeModern, args: dict[str, Any]) -> str:
    conn = _find_connector(m, args.get("Identity"))
    user, rights, deny = _ace_args("Add-ADPermission", args)
    for right in rights:
        present = any(
            p.User == user and p.Deny == deny and right in p.ExtendedRights and not p.IsInherited
            for p in conn.Permissions
        )
        if not present:  # Exchange warns "already present" and changes nothing
            conn.Permissions.append(AdPermission(User=user, ExtendedRights=[right], Deny=deny))
    return identity(m, conn)


def remove_ad_permission(m: ExchangeModern, args: dict[str, Any]) -> str:
    conn = _find_connector(m, args.get("Identity"))
    user, rights, deny = _ace_args("Remove-ADPermission", args)
    kept: list[AdPermission] = []
    for ace in conn.Permissions:
        if ace.User == user and ace.Deny == deny and not ace.IsInherited:
            remaining = [r for r in ace.ExtendedRights if r not in rights]
            if remaining:
                kept.append(AdPermission(User=ace.User, ExtendedRights=remaining, Deny=ace.Deny))
            continue
        kept.append(ace)
    conn.Permissions = kept
    return identity(m, conn)


def _domain_type(value: Any) -> str:
    if value not in DOMAIN_TYPES:
        fail(
            f'Cannot convert value "{value}" to type "AcceptedDomainType". Specify one of the '
            f"following enumerator names and try again: {', '.join(DOMAIN_TYPES)}"
        )
    return str(value)


def new_accepted_domain(m: ExchangeModern, args: dict[str, Any]) -> str:
    _check_args("New-AcceptedDomain", args, {"Name", "DomainName", "DomainType"})
    name = str(args.get("Name") or "").strip()
    domain = str(args.get("DomainName") or "").strip().lower()
    if not name or not domain or " " in domain:
        fail(f"The domain name '{domain}' isn't valid.")
    if any(
        d.DomainName.lower() == domain or d.Name.lower() == name.lower() for d in m.AcceptedDomains
    ):
        fail(f"The accepted domain '{domain}' already exists.")
    domain_type = _domain_type(args.get("DomainType", "Authoritative"))
    if domain.startswith("*") and domain_type == "Authoritative":
        fail("A wildcard accepted domain can't be Authoritative.")
    m.AcceptedDomains.append(
        AcceptedDomain(Name=name, DomainName=domain, DomainType=domain_type)  # type: ignore[arg-type]
    )
    return name


def set_accepted_domain(m: ExchangeModern, args: dict[str, Any]) -> str:
    _check_args("Set-AcceptedDomain", args, {"Identity", "DomainType", "MakeDefault"})
    domain = _find_domain(m, args.get("Identity"))
    if "DomainType" in args:
        domain_type = _domain_type(args["DomainType"])
        if domain.DomainName.startswith("*") and domain_type == "Authoritative":
            fail("A wildcard accepted domain can't be Authoritative.")
        domain.DomainType = domain_type  # type: ignore[assignment]
    if args.get("MakeDefault") is True:
        for other in m.AcceptedDomains:
            other.Default = other is domain
    return domain.Name


def remove_accepted_domain(m: ExchangeModern, args: dict[str, Any]) -> str:
    _check_args("Remove-AcceptedDomain", args, {"Identity"})
    domain = _find_domain(m, args.get("Identity"))
    if domain.Default:
        fail(f"The default accepted domain '{domain.DomainName}' can't be removed.")
    m.AcceptedDomains.remove(domain)
    return domain.Name


def set_recipient_filter_config(m: ExchangeModern, args: dict[str, Any]) -> str:
    _check_args("Set-RecipientFilterConfig", args, {"Enabled", "RecipientValidationEnabled"})
    if "Enabled" in args:
        m.RecipientFilter.Enabled = _bool("Enabled", args["Enabled"])
    if "RecipientValidationEnabled" in args:
        m.RecipientFilter.RecipientValidationEnabled = _bool(
            "RecipientValidationEnabled", args["RecipientValidationEnabled"]
        )
    return "RecipientFilterConfig"


CMDLETS: dict[str, Cmdlet] = {
    "New-ReceiveConnector": new_receive_connector,
    "Set-ReceiveConnector": set_receive_connector,
    "Remove-ReceiveConnector": remove_receive_connector,
    "Add-ADPermission": add_ad_permission,
    "Remove-ADPermission": remove_ad_permission,
    "New-AcceptedDomain": new_accepted_domain,
    "Set-AcceptedDomain": set_accepted_domain,
    "Remove-AcceptedDomain": remove_accepted_domain,
    "Set-RecipientFilterConfig": set_recipient_filter_config,
}
