"""What shapes a probe run: addresses, domains, timeouts and politeness bounds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relayguard.probe.targets import Target

# RFC 2606 reserves example.com: it is never a real recipient, yet it resolves, so servers that
# check the recipient domain in DNS still evaluate their relay rules. Use a domain you control
# (--external-domain) when delivery confirmation is wanted.
DEFAULT_EXTERNAL_DOMAIN = "example.com"
# nmap's smtp-open-relay defaults for the local parts (docs/sources.md#nmap-smtp-open-relay).
DEFAULT_FROM = "antispam"
DEFAULT_TO = "relaytest"
# RFC 8314 §3.3: port 465 is message submission over implicit TLS (TLS before the banner).
IMPLICIT_TLS_PORTS = (465,)


@dataclass(frozen=True)
class ProbeOptions:
    """Options of one probe run; every field is validated by `relayguard.validate` at the edge."""

    port: int = 25
    # Ports each target without an explicit port is probed on (one result per port); empty:
    # `port` alone, as before `--ports` existed.
    ports: tuple[int, ...] = ()
    source_address: str | None = None
    external_domain: str = DEFAULT_EXTERNAL_DOMAIN
    local_domain: str | None = None
    # A domain per target (host, port, domain; port 0: every port of that host), for a batch
    # whose servers accept mail for different domains: each target's own beats `local_domain`.
    target_local_domains: tuple[tuple[str, int, str], ...] = ()
    helo_name: str | None = None  # defaults to the external domain, as nmap does
    mail_from_local: str = DEFAULT_FROM
    rcpt_to_local: str = DEFAULT_TO
    command_timeout: float = 30.0  # seconds to wait for one reply
    host_timeout: float = 900.0  # seconds for all tests of one host
    connect_timeout: float = 15.0
    # At most this many connections to one host; more than one only while replies are slow
    # (tarpits), so a host that answers at once sees a single connection.
    connections_per_host: int = 4
    slow_reply_s: float = 1.0
    max_hosts_in_flight: int = 256
    pipelining: bool = True  # RFC 2920, when the server advertises it
    # Relay tests that share a MAIL FROM go in one transaction, one RCPT each (1 = nmap's way)
    rcpts_per_transaction: int = 8
    starttls: bool = True
    max_retries_per_test: int = 1
    vantage: str = "direct"

    @property
    def helo(self) -> str:
        return self.helo_name or self.external_domain

    @property
    def default_ports(self) -> tuple[int, ...]:
        """The ports a target given without one is probed on."""
        return self.ports or (self.port,)

    @staticmethod
    def implicit_tls(port: int) -> bool:
        """Whether a port speaks TLS from the first byte (RFC 8314 §3.3), not STARTTLS."""
        return port in IMPLICIT_TLS_PORTS

    def for_target(self, target: Target) -> ProbeOptions:
        """These options for one target: its own local domain when one was given for it."""
        for host, port, domain in self.target_local_domains:
            if host == target.host and port in (0, target.port):
                return replace(self, local_domain=domain)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def checked_options(
    *,
    port: object = 25,
    ports: object = None,
    source_address: object = None,
    external_domain: object = DEFAULT_EXTERNAL_DOMAIN,
    local_domain: object = None,
    local_domains: object = None,
    helo_name: object = None,
    mail_from_local: object = DEFAULT_FROM,
    rcpt_to_local: object = DEFAULT_TO,
    timeout: object = 30.0,
    host_timeout: object = 900.0,
    connections_per_host: object = 4,
    starttls: object = True,
    pipelining: object = True,
    max_hosts_in_flight: object = 256,
    rcpts_per_transaction: object = 8,
    vantage: str | None = None,
) -> ProbeOptions:
    """ProbeOptions from untrusted values (CLI, module options); raises InputError."""
    from relayguard import validate as v

    source = None if source_address is None else v.ip_address("source_address", source_address)
    per_host = v.positive_number("connections_per_host", connections_per_host, 16)
    if per_host != int(per_host):
        raise v.InputError("connections_per_host", connections_per_host, "is not a whole number")
    for name, flag in (("starttls", starttls), ("pipelining", pipelining)):
        if not isinstance(flag, bool):
            raise v.InputError(name, flag, "is not true or false")
    in_flight = v.positive_number("max_hosts_in_flight", max_hosts_in_flight, 10000)
    per_transaction = v.positive_number("rcpts_per_transaction", rcpts_per_transaction, 100)
    return ProbeOptions(
        port=v.port("port", port),
        ports=_ports(ports),
        source_address=source,
        external_domain=v.domain("external_domain", external_domain),
        local_domain=None if local_domain is None else v.mail_domain("local_domain", local_domain),
        target_local_domains=_target_local_domains(local_domains),
        helo_name=None if helo_name is None else v.domain("helo_name", helo_name),
        mail_from_local=v.local_part("from", mail_from_local),
        rcpt_to_local=v.local_part("to", rcpt_to_local),
        command_timeout=v.positive_number("timeout", timeout, 3600),
        host_timeout=v.positive_number("host_timeout", host_timeout, 86400),
        connections_per_host=int(per_host),
        starttls=bool(starttls),
        pipelining=bool(pipelining),
        max_hosts_in_flight=int(in_flight),
        rcpts_per_transaction=int(per_transaction),
        vantage=vantage or (f"source {source}" if source else "direct"),
    )


def _ports(value: object) -> tuple[int, ...]:
    """A list of ports (a sequence, or `25,587,465`), each once, in the order given."""
    from relayguard import validate as v

    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise v.InputError("ports", value, "is not a non-empty list of ports")
    ports = [
        v.port("ports", int(item) if isinstance(item, str) and item.strip().isdigit() else item)
        for item in items
    ]
    return tuple(dict.fromkeys(ports))


def _target_local_domains(value: object) -> tuple[tuple[str, int, str], ...]:
    """`{target: domain}` (a target as `targets` takes it: host, host:port, [v6]:port) as
    (host, port, domain) rows; port 0 when the target names none (every port)."""
    from relayguard import validate as v
    from relayguard.probe.targets import TargetError, parse_target

    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise v.InputError("local_domains", value, "is not a mapping of target to domain")
    rows = []
    for spec, domain in value.items():
        try:
            target = parse_target(str(spec), default_port=0)
        except TargetError as exc:
            raise v.InputError("local_domains", spec, str(exc)) from None
        rows.append((target.host, target.port, v.mail_domain(f"local_domains[{spec}]", domain)))
    return tuple(rows)
