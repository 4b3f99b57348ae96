"""A domain's mail servers, as a sender finds them: MX, else the domain itself; null MX.

RFC 5321 §5.1: the MX records of the domain, most preferred first; with no MX record the
domain's own address records are an implicit MX of preference 0. RFC 7505 §3: a single MX
whose exchange is "." (a null MX) says the domain accepts no mail. Lookups use dnspython with
the system resolver configuration (/etc/resolv.conf), or the nameserver given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["4", "6", "both"]
_RDTYPES: dict[str, tuple[str, ...]] = {"4": ("A",), "6": ("AAAA",), "both": ("A", "AAAA")}


class DnsError(Exception):
    """The lookup failed (no such domain, no answer in time, SERVFAIL)."""


@dataclass(frozen=True)
class MailExchanger:
    name: str
    preference: int
    addresses: tuple[str, ...] = ()
    error: str | None = None  # why no address was found, when none was


@dataclass(frozen=True)
class DomainMail:
    """What DNS says about where `domain`'s mail goes."""

    domain: str
    exchangers: tuple[MailExchanger, ...] = ()
    null_mx: bool = False  # RFC 7505: the domain accepts no mail
    implicit_mx: bool = False  # no MX: the domain's own A/AAAA (RFC 5321 §5.1)
    error: str | None = None  # the MX lookup itself failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "null_mx": self.null_mx,
            "implicit_mx": self.implicit_mx,
            "error": self.error,
            "exchangers": [
                {
                    "name": mx.name,
                    "preference": mx.preference,
                    "addresses": list(mx.addresses),
                    "error": mx.error,
                }
                for mx in self.exchangers
            ],
        }


def exchangers_from(domain: str, records: Sequence[tuple[int, str]] | None) -> DomainMail:
    """The decision over MX records (preference, exchange); None when the domain has none.

    Pure: addresses are filled in afterwards. Names are lower-case without the final dot;
    order is preference, then name (RFC 5321 §5.1 leaves equal preferences to the sender)."""
    if records is None:
        return DomainMail(domain, (MailExchanger(domain, 0),), implicit_mx=True)
    names = [(pref, name.rstrip(".").lower()) for pref, name in records]
    if any(name == "" for _, name in names):
        # RFC 7505 §3: a null MX, alone; with other records it is malformed, but its
        # publisher still said "no mail", so the domain is not probed either way
        return DomainMail(domain, null_mx=True)
    unique = sorted(set(names))
    return DomainMail(domain, tuple(MailExchanger(name, pref) for pref, name in unique))


def _resolver(nameserver: tuple[str, int] | None, timeout: float) -> Any:
    import dns.asyncresolver

    resolver = dns.asyncresolver.Resolver(configure=nameserver is None)
    if nameserver is not None:
        resolver.nameservers = [nameserver[0]]
        resolver.port = nameserver[1]
    resolver.lifetime = timeout
    return resolver


async def _query(resolver: Any, name: str, rdtype: str) -> list[Any] | None:
    """The records of one type; None when the name exists without them (NOERROR, no data)."""
    import dns.exception
    import dns.resolver

    try:
        answer = await resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NoAnswer:
        return None
    except dns.resolver.NXDOMAIN as exc:
        raise DnsError(f"{name}: no such domain (NXDOMAIN)") from exc
    except dns.exception.Timeout as exc:
        raise DnsError(f"{name} {rdtype}: no answer in time") from exc
    except dns.exception.DNSException as exc:
        raise DnsError(f"{name} {rdtype}: {exc}") from exc
    return list(answer)


async def _addresses(resolver: Any, mx: MailExchanger, family: Family) -> MailExchanger:
    found: list[str] = []
    errors: list[str] = []
    for rdtype in _RDTYPES[family]:
        try:
            records = await _query(resolver, mx.name, rdtype)
        except DnsError as exc:
            errors.append(str(exc))
            continue
        found.extend(str(r.address) for r in records or ())
    if found:
        return MailExchanger(mx.name, mx.preference, tuple(dict.fromkeys(found)))
    why = "; ".join(errors) or f"no {' or '.join(_RDTYPES[family])} record"
    return MailExchanger(mx.name, mx.preference, (), why)


async def lookup_domain(
    domain: str,
    family: Family = "both",
    nameserver: tuple[str, int] | None = None,
    timeout: float = 15.0,
) -> DomainMail:
    """Where `domain`'s mail goes, every address of every exchanger (of `family`)."""
    resolver = _resolver(nameserver, timeout)
    try:
        records = await _query(resolver, domain, "MX")
    except DnsError as exc:
        return DomainMail(domain, error=str(exc))
    pairs = None if records is None else [(r.preference, r.exchange.to_text()) for r in records]
    mail = exchangers_from(domain, pairs)
    exchangers = await asyncio.gather(*(_addresses(resolver, mx, family) for mx in mail.exchangers))
    return DomainMail(domain, tuple(exchangers), mail.null_mx, mail.implicit_mx)
