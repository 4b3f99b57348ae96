"""What a lab fleet is made of: named fleets, `--hosts` specs, addresses. Pure planning.

A fleet is a list of `HostPlan`s: a name, a platform, a profile (Exchange twin profile of
`profiles` or Postfix profile of `postfix_profiles`), a loopback address from the lab's range
(127.0.30.1-127.0.58.254; 127.0.59.0/24 are the lab's trusted clients, 127.0.60.0/24 its
untrusted ones) and the verdict a relay probe from an untrusted source must reach.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from relayguard.lab.exchange import profiles
from relayguard.vocabulary import Platform, Verdict, inventory_group

FIRST_ADDRESS = "127.0.30.1"
LAST_ADDRESS = "127.0.58.254"
TRUSTED_CLIENT = "127.0.59.10"
UNTRUSTED_CLIENT = "127.0.60.200"

EXCHANGE_PLATFORMS = (
    Platform.EXCHANGE55,
    Platform.EXCHANGE2013,
    Platform.EXCHANGE2016,
    Platform.EXCHANGE2019,
    Platform.EXCHANGESE,
)

# profile -> verdict of a relay probe from an untrusted address (RCPT-time view, like nmap)
EXPECTED: dict[str, Verdict] = {
    "sp2-noreroute": Verdict.OPEN,  # 250 for every RCPT, NDR later: open at RCPT time
    "sp2-reroute-open": Verdict.OPEN,
    "sp3-wide-allow": Verdict.OPEN,
    "sp4-closed": Verdict.CLOSED,
    "anon-relay": Verdict.OPEN,
    "star-domain": Verdict.OPEN,
    "compliant": Verdict.CLOSED,
    "closed-unpatched": Verdict.CLOSED,
    "open_relay": Verdict.OPEN,
    "closed": Verdict.CLOSED,
    "debian_default": Verdict.CLOSED,
    "drop_after_errors": Verdict.CLOSED,
}

# kind -> the profiles a `--hosts kind:N` spec cycles through
KIND_PROFILES: dict[Platform, tuple[str, ...]] = {
    Platform.EXCHANGE55: ("sp2-noreroute", "sp2-reroute-open", "sp3-wide-allow", "sp4-closed"),
    Platform.EXCHANGE2013: profiles.MODERN_PROFILES,
    Platform.EXCHANGE2016: profiles.MODERN_PROFILES,
    Platform.EXCHANGE2019: profiles.MODERN_PROFILES,
    Platform.EXCHANGESE: profiles.MODERN_PROFILES,
    Platform.POSTFIX: ("open_relay", "debian_default", "closed"),
    Platform.EXIM: ("open_relay", "closed"),
    Platform.SENDMAIL: ("open_relay", "closed"),
}
# Real servers (no twin, no NetBIOS name) and their host name prefixes.
_REAL_PREFIX = {Platform.POSTFIX: "pf", Platform.EXIM: "exim", Platform.SENDMAIL: "sm"}


class FleetError(ValueError):
    """A fleet name or `--hosts` spec that cannot be planned."""


@dataclass(frozen=True)
class HostPlan:
    name: str
    platform: Platform
    profile: str
    server: str  # NetBIOS-style name of an Exchange twin ("" for Postfix)
    address: str

    @property
    def expected(self) -> Verdict:
        return EXPECTED[self.profile]

    @property
    def group(self) -> str:
        """The inventory group: exchange55, exchange_modern, postfix, exim or sendmail."""
        return inventory_group(self.platform)


# The default fleet of issue 3: (name, platform, profile, server)
_DEFAULT: tuple[tuple[str, Platform, str, str], ...] = (
    ("ex55-sp2-noreroute", Platform.EXCHANGE55, "sp2-noreroute", "EX55A"),
    ("ex55-sp2-reroute-open", Platform.EXCHANGE55, "sp2-reroute-open", "EX55B"),
    ("ex55-sp3-wide-allow", Platform.EXCHANGE55, "sp3-wide-allow", "EX55C"),
    ("ex2019-anon-relay", Platform.EXCHANGE2019, "anon-relay", "EX19A"),
    ("ex2016-star-domain", Platform.EXCHANGE2016, "star-domain", "EX16A"),
    # relay closed, patch level behind: CU15 without its updates (secure-relay.yml patches it)
    ("ex2019-compliant", Platform.EXCHANGE2019, "closed-unpatched", "EX19B"),
    ("pf-open-relay", Platform.POSTFIX, "open_relay", ""),
    ("pf-debian-default", Platform.POSTFIX, "debian_default", ""),
    # issue 18: an open Exim and an open Sendmail beside them (real servers, root only)
    ("exim-open-relay", Platform.EXIM, "open_relay", ""),
    ("sm-open-relay", Platform.SENDMAIL, "open_relay", ""),
)
# Every real MTA the lab runs, open and closed (issue 18): Postfix, Exim, Sendmail.
_MTA: tuple[tuple[str, Platform, str, str], ...] = (
    ("pf-open-relay", Platform.POSTFIX, "open_relay", ""),
    ("pf-debian-default", Platform.POSTFIX, "debian_default", ""),
    ("exim-open-relay", Platform.EXIM, "open_relay", ""),
    ("exim-closed", Platform.EXIM, "closed", ""),
    ("sm-open-relay", Platform.SENDMAIL, "open_relay", ""),
    ("sm-closed", Platform.SENDMAIL, "closed", ""),
)
FLEETS: dict[str, tuple[tuple[str, Platform, str, str], ...]] = {
    "default": _DEFAULT,
    "exchange": tuple(h for h in _DEFAULT if h[1] not in _REAL_PREFIX),
    "mta": _MTA,
}


def in_lab_range(address: str) -> bool:
    """Whether `address` is an IPv4 address from FIRST_ADDRESS to LAST_ADDRESS."""
    try:
        candidate = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    first, last = ipaddress.IPv4Address(FIRST_ADDRESS), ipaddress.IPv4Address(LAST_ADDRESS)
    return first <= candidate <= last


def addresses(first: str = FIRST_ADDRESS) -> Iterator[str]:
    """Loopback addresses from `first` up to LAST_ADDRESS, skipping .0 and .255."""
    if not in_lab_range(first):
        raise FleetError(
            f"first address {first!r} is not in the lab range {FIRST_ADDRESS}-{LAST_ADDRESS}"
        )
    last = ipaddress.IPv4Address(LAST_ADDRESS)
    current = ipaddress.IPv4Address(first)
    while current <= last:
        if str(current).rsplit(".", 1)[1] not in ("0", "255"):
            yield str(current)
        current += 1


def plan_named(fleet: str, first: str = FIRST_ADDRESS) -> list[HostPlan]:
    if fleet not in FLEETS:
        raise FleetError(f"unknown fleet {fleet!r}; known: {', '.join(FLEETS)}")
    return [
        HostPlan(name=n, platform=p, profile=prof, server=s, address=a)
        for (n, p, prof, s), a in zip(FLEETS[fleet], addresses(first), strict=False)
    ]


def parse_hosts_spec(spec: str) -> list[tuple[Platform, str | None, int]]:
    """`exchange2019:300,postfix:2,exchange55/sp4-closed:3` -> [(platform, profile, count)]."""
    out: list[tuple[Platform, str | None, int]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        kind_text, _, count_text = item.partition(":")
        kind_text, _, profile = kind_text.partition("/")
        try:
            platform = Platform(kind_text.strip())
        except ValueError:
            kinds = ", ".join(p.value for p in KIND_PROFILES)
            raise FleetError(
                f"unknown host kind {kind_text!r} in --hosts; known: {kinds}"
            ) from None
        if platform not in KIND_PROFILES:
            raise FleetError(f"the lab has no {platform.value} hosts")
        count_text = count_text.strip() or "1"
        if not count_text.isdigit() or int(count_text) < 1:
            raise FleetError(f"invalid host count {count_text!r} in --hosts (expected e.g. :10)")
        named = KIND_PROFILES[platform]
        if platform not in (Platform.EXCHANGE55, *_REAL_PREFIX):
            named = profiles.MODERN_NAMED_PROFILES
        if profile and profile not in named:
            known = ", ".join(named)
            raise FleetError(f"unknown {platform.value} profile {profile!r}; known: {known}")
        out.append((platform, profile or None, int(count_text)))
    if not out:
        raise FleetError("--hosts names no hosts (expected e.g. exchange2019:300,postfix:2)")
    return out


def plan_spec(spec: str, first: str = FIRST_ADDRESS) -> list[HostPlan]:
    """Hosts for a `--hosts` spec; each kind cycles through its profiles unless one is named."""
    wanted = parse_hosts_spec(spec)
    pool = addresses(first)
    plans: list[HostPlan] = []
    for platform, profile, count in wanted:
        cycle = itertools.cycle([profile] if profile else KIND_PROFILES[platform])
        for _ in range(count):
            prof = next(cycle)
            index = sum(1 for p in plans if p.platform == platform) + 1
            try:
                address = next(pool)
            except StopIteration:
                raise FleetError(
                    "--hosts asks for more hosts than the lab's address range"
                ) from None
            prefix = _prefix(platform)
            server = "" if platform in _REAL_PREFIX else f"{prefix.upper()}N{index:04d}"
            plans.append(
                HostPlan(
                    name=f"{prefix}-{prof.replace('_', '-')}-{index:04d}",
                    platform=platform,
                    profile=prof,
                    server=server,
                    address=address,
                )
            )
    return plans


def _prefix(platform: Platform) -> str:
    """Host name prefix of a kind: pf, ex55, ex2019..."""
    return _REAL_PREFIX.get(platform) or platform.value.replace("exchange", "ex")
