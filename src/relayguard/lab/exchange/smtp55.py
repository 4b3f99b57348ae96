"""The SMTP behaviour of the Exchange Server 5.5 Internet Mail Service, as pure functions.

Every reply derives from the twin's state, and from the part of it the running
MSExchangeIMC loaded at its last start (`Exchange55.loaded()`): the IMS reads its registry
parameters when it starts, so a registry change takes effect after a restart (KB Q193922).

Sources (docs/sources.md#kb-q193922, #kb-q169683, #kb-q255695, #ms99-027, #kb-q264330,
#kb-q256856, #exchange55-percent-hack-unsourced, docs/lab.md):
- "Do not reroute incoming SMTP mail": the IMS accepts RCPT for any domain with 250, accepts
  DATA and sends a non-delivery report later (KB Q255695, Q237927).
- "Reroute incoming SMTP mail" with the Routing list (KB Q169683, Q259531): an entry matches
  its domain and every subdomain, `#domain` that domain only. Domains "accepted as inbound"
  are local; mail elsewhere is rerouted (relayed) for clients the routing restrictions allow
  (SP1+, KB Q196626); only an entry with "Override relay restrictions. Always relay." relays
  for every client.
- Routing restrictions (KB Q193922): `RelayFlags` bits 1 deny list, 2 allow list, 4 local-IP
  list, 8 authenticated clients; lists of `net;mask`, a line without `;mask` is one host
  (mask 255.255.255.255), and a client matches when `(IP AND mask) == net` (a net with host
  bits set matches no client). Refusal: `550 Relaying is prohibited` (KB Q193922, Q256856).
- Encapsulated addresses (MS99-027, KB Q237927): below msexcimc.exe 5.5.2650.1 an
  `IMCEASMTP-...@local` address at a local domain is rerouted without applying the
  restrictions. The quoted `"IMCEA..."@local` variant (KB Q264330, fixed in SP4) needs
  "Forward all messages to host" plus a restriction to authenticated clients only.
- The `%`-hack (`user%foreign@local`) as an MS99-027 bypass: UNSOURCED. No KB or bulletin we
  found says the 5.5 IMS reroutes it; the twin treats it like the IMCEA form (lab choice,
  docs/sources.md#exchange55-percent-hack-unsourced) so the probe's percent-hack tests
  have something to find.
"""

from __future__ import annotations

import hashlib
import ipaddress

from relayguard.lab.exchange.dialogue import Disposition, Reply, SessionFacts
from relayguard.lab.exchange.mailpath import MailPath, decode_imcea
from relayguard.lab.exchange.state import Exchange55, ImsParameters, ImsRunning, RoutingEntry

# Thresholds as data (docs/sources.md#ms99-027-secondary-threshold).
IMCEA_FIX = (5, 5, 2650, 1)  # MS99-027, KB Q237927
QUOTED_IMCEA_FIX = (5, 5, 2653, 0)  # Exchange 5.5 SP4, KB Q264330

# KB Q193922, Q256856: the 5.5 IMS's refusal ("5.7.1 Unable to relay" is IIS / Exchange 2000,
# KB Q304897).
REFUSAL = "Relaying is prohibited"
HOST_MASK = 0xFFFFFFFF  # KB Q193922: a line without ";mask" is one host

RELAY_DENY = 1
RELAY_ALLOW = 2
RELAY_LOCAL_IP = 4
RELAY_AUTHENTICATED = 8


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def greeting(x: Exchange55) -> str:
    """The 220 text after the code: the IMS names itself and its own file version."""
    version = x.loaded().ImcFileVersion
    return f"{x.Fqdn} ESMTP Server (Microsoft Exchange Internet Mail Service {version}) ready"


def ehlo_lines(x: Exchange55, session: SessionFacts) -> list[str]:
    """The EHLO reply of the 5.5 IMS (AUTH LOGIN for Windows NT accounts)."""
    lines = [
        f"{x.Fqdn} Hello [{session.client_ip}]",
        "XEXCH50",
        "HELP",
        "ETRN",
        "DSN",
        "SIZE 0",
        "AUTH LOGIN",
        "AUTH=LOGIN",
    ]
    return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]


def helo_line(x: Exchange55, session: SessionFacts) -> str:
    return f"250 {x.Fqdn} Hello [{session.client_ip}]"


def mail_reply(x: Exchange55, path: MailPath) -> Reply:
    """The 5.5 IMS accepts any sender; relay is decided at RCPT."""
    return Reply(250, f"OK - mail from <{path.text}>")


def check_password(x: Exchange55, user: str, password: str) -> bool:
    digest = x.SmtpAccounts.get(user.lower())
    return digest is not None and digest == hashlib.sha256(password.encode()).hexdigest()


def rcpt_reply(
    x: Exchange55, session: SessionFacts, path: MailPath, *, legit_flow_broken: bool = False
) -> Reply:
    """The IMS's answer to `RCPT TO:` for this state, client and path."""
    run = x.loaded()
    refuse = Reply(550, REFUSAL)
    if not path.domain:
        return Reply(501, "5.5.4 Invalid Address")
    if legit_flow_broken:
        return refuse

    def accept(disposition: Disposition) -> Reply:
        return Reply(250, f"OK - Recipient <{path.text}>", disposition=disposition)

    local = is_inbound(x, run, path.domain)
    target = encapsulated_target(path) if local and not path.route else None
    bypass = target is not None and _bypasses_restrictions(path, run)

    if not run.Routing.RerouteIncoming:
        # "Do not reroute": 250 for any recipient; the NDR comes after DATA.
        if target is not None:
            foreign = not is_inbound(x, run, _domain_of(target))
            return accept(Disposition.RELAY if bypass and foreign else Disposition.NDR)
        if local:
            return accept(_local_disposition(x, path))
        return accept(Disposition.NDR)

    entry = rerouted_entry(run, path.domain)
    if entry is not None and not path.route and entry.AlwaysRelay:
        return accept(Disposition.RELAY)  # "Override relay restrictions" (KB Q259531)
    if local and target is None:
        return accept(_local_disposition(x, path))
    if target is not None:
        if is_inbound(x, run, _domain_of(target)):
            return accept(Disposition.DELIVER)
        if bypass:
            return accept(Disposition.RELAY)  # the MS99-027 / Q264330 hole
    if may_relay(run.Parameters, session):
        return accept(Disposition.RELAY)
    return refuse


def _local_disposition(x: Exchange55, path: MailPath) -> Disposition:
    address = f"{path.local}@{path.domain}".lower()
    known = {m.lower() for m in x.Mailboxes}
    return Disposition.DELIVER if address in known else Disposition.NDR


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def routing_domain_matches(pattern: str, domain: str) -> bool:
    """A Routing-tab entry matches its domain and every subdomain; `#domain` only itself
    (KB Q169683, Q259531). Case-insensitive (RFC 2505 §2.1)."""
    wanted = domain.lower().rstrip(".")
    text = pattern.strip().lower().rstrip(".")
    if text.startswith("#"):
        return wanted == text[1:]
    return wanted == text or wanted.endswith("." + text)


def is_inbound(x: Exchange55, run: ImsRunning, domain: str) -> bool:
    """The site's SMTP domain and the Routing list's "accepted as inbound" domains.

    A domain literal is not local: the IMS matches names from its address space and Routing
    list only (lab choice).
    """
    if domain.lower().rstrip(".") == x.LocalDomain.lower():
        return True
    return any(
        e.Action == "Inbound" and routing_domain_matches(e.Domain, domain)
        for e in run.Routing.RoutingList
    )


def rerouted_entry(run: ImsRunning, domain: str) -> RoutingEntry | None:
    for entry in run.Routing.RoutingList:
        if entry.Action == "Reroute" and routing_domain_matches(entry.Domain, domain):
            return entry
    return None


def encapsulated_target(path: MailPath) -> str | None:
    """The foreign address hidden in a local-domain recipient, if any.

    - `IMCEASMTP-relaytest+40example+2Enet@local` (KB Q237927, MS-OXCMAIL 2.1.3.1.8)
    - `"IMCEA relaytest@example.net"@local` / `"IMCEASMTP-..."@local` (KB Q264330)
    - `relaytest%example.net@local` (the %-hack, RFC 2505 §2.1)
    """
    if path.quoted:
        upper = path.local.upper()
        if not upper.startswith("IMCEA"):
            return None
        decoded = decode_imcea(path.local)
        if decoded is not None and "@" in decoded[1] and " " not in path.local:
            return decoded[1]
        inner = path.local[5:].strip()
        if inner.upper().startswith("SMTP:"):
            inner = inner[5:]
        return inner if "@" in inner else None
    decoded = decode_imcea(path.local)
    if decoded is not None:
        addr_type, address = decoded
        return address if addr_type == "SMTP" and "@" in address else None
    if "%" in path.local:
        user, _, domain = path.local.rpartition("%")
        return f"{user}@{domain}" if user and domain else None
    return None


def _bypasses_restrictions(path: MailPath, run: ImsRunning) -> bool:
    version = version_tuple(run.ImcFileVersion)
    if path.quoted:
        # KB Q264330: only with "Forward all messages to host" and a restriction to
        # authenticated clients only (RelayFlags grants bit 8 and nothing else).
        flags = run.Parameters.RelayFlags or 0
        auth_only = flags & (RELAY_ALLOW | RELAY_LOCAL_IP | RELAY_AUTHENTICATED) == (
            RELAY_AUTHENTICATED
        )
        return version < QUOTED_IMCEA_FIX and bool(run.Routing.ForwardAllHost) and auth_only
    return version < IMCEA_FIX


def may_relay(params: ImsParameters, session: SessionFacts) -> bool:
    """Routing restrictions of KB Q193922 applied to this client.

    No RelayFlags (or 0): no restrictions, everyone may relay. A client on the deny list
    never relays (checked first: lab choice, the KB does not give an order). Bit 1 alone:
    everyone not denied relays. Otherwise one of the enabled grants must match.
    """
    flags = params.RelayFlags or 0
    if flags == 0:
        return True
    client = session.client_ip
    if flags & RELAY_DENY and _in_list(client, params.RelayDenyList):
        return False
    grants = flags & (RELAY_ALLOW | RELAY_LOCAL_IP | RELAY_AUTHENTICATED)
    if grants == 0:
        return True
    if flags & RELAY_AUTHENTICATED and session.authenticated:
        return True
    if flags & RELAY_ALLOW and _in_list(client, params.RelayAllowList):
        return True
    return bool(flags & RELAY_LOCAL_IP and _in_list(session.server_ip, params.RelayLocalIPList))


def parse_net_mask(entry: str) -> tuple[int, int] | None:
    """`10.0.0.0;255.0.0.0` -> (net, mask); `10.1.2.3` -> mask 255.255.255.255 (KB Q193922).
    None when a part is not a dotted IPv4 address (the line grants nothing)."""
    net, sep, mask = entry.strip().partition(";")
    try:
        net_int = int(ipaddress.IPv4Address(net.strip()))
        mask_int = int(ipaddress.IPv4Address(mask.strip())) if sep else HOST_MASK
    except ValueError:
        return None
    return net_int, mask_int


def _in_list(address: str, entries: list[str] | None) -> bool:
    """KB Q193922: a client matches a line when (IP AND mask) == net; a net with host bits
    set outside its mask matches nobody (no widening to the enclosing network)."""
    try:
        ip = int(ipaddress.IPv4Address(address))
    except ValueError:
        return False
    for entry in entries or []:
        parsed = parse_net_mask(entry)
        if parsed is not None and ip & parsed[1] == parsed[0]:
            return True
    return False


def data_reply() -> Reply:
    return Reply(250, "OK")
