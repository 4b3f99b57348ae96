"""Probe many hosts in one process: resolve, bound concurrency, collect results in order."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relayguard.probe.mx import DomainMail, Family, lookup_domain
from relayguard.probe.options import ProbeOptions
from relayguard.probe.results import HostResult
from relayguard.probe.runner import HostProbe
from relayguard.probe.session import Opener, direct_opener
from relayguard.probe.targets import Target, expand_targets
from relayguard.vocabulary import Verdict

OpenerFactory = Callable[[ProbeOptions], Opener]


def _default_opener(options: ProbeOptions) -> Opener:
    return direct_opener(options.source_address, options.connect_timeout)


async def _resolve(host: str, port: int, source: str | None) -> str:
    """The address to connect to; with a source address, of the same family as the source."""
    family = socket.AF_UNSPEC
    if source is not None:
        family = socket.AF_INET6 if ":" in source else socket.AF_INET
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address for {host}")
    return str(infos[0][4][0])


async def probe_host(
    target: Target, options: ProbeOptions, opener: Opener, label: str | None = None
) -> HostResult:
    name = label or str(target)
    options = options.for_target(target)
    try:
        address = await _resolve(target.host, target.port, options.source_address)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return HostResult(
            target=name,
            address=None,
            port=target.port,
            verdict=Verdict.INCONCLUSIVE,
            reason=f"cannot resolve {target.host}: {reason}",
            vantage=options.vantage,
        )
    return await HostProbe(name, address, target.port, options, opener).run()


async def probe_targets_async(
    targets: Sequence[Target],
    options: ProbeOptions,
    opener_factory: OpenerFactory = _default_opener,
) -> list[HostResult]:
    opener = opener_factory(options)
    bound = asyncio.Semaphore(max(1, options.max_hosts_in_flight))

    async def one(target: Target) -> HostResult:
        async with bound:
            return await probe_host(target, options, opener)

    return list(await asyncio.gather(*(one(t) for t in targets)))


@dataclass(frozen=True)
class _Planned:
    target: Target
    domain: str
    mx: str


def _plan(
    mail: DomainMail, ports: tuple[int, ...], every_family: bool
) -> tuple[list[_Planned], list[HostResult]]:
    """Every address of every exchanger on every port; an exchanger without any address (or a
    failed lookup) is an inconclusive result of its own, so it is never silently dropped. With
    one family asked for, an exchanger without an address of that family is only listed."""
    planned: list[_Planned] = []
    failed: list[HostResult] = []
    if mail.error is not None:
        reason = f"MX lookup failed: {mail.error}"
        failed.append(_unresolved(mail.domain, mail.domain, ports[0], reason))
    for mx in mail.exchangers:
        if not mx.addresses and every_family:
            failed.append(_unresolved(mail.domain, mx.name, ports[0], f"no address: {mx.error}"))
        planned.extend(
            _Planned(Target(address, port), mail.domain, mx.name)
            for address in mx.addresses
            for port in ports
        )
    return planned, failed


def _unresolved(domain: str, name: str, port: int, reason: str) -> HostResult:
    return HostResult(
        target=name,
        address=None,
        port=port,
        verdict=Verdict.INCONCLUSIVE,
        reason=reason,
        vantage="dns",
        domain=domain,
        mx=name,
    )


async def _probe_domains_async(
    domains: Sequence[str],
    options: ProbeOptions,
    family: Family,
    nameserver: tuple[str, int] | None,
) -> tuple[list[DomainMail], list[HostResult]]:
    mails = list(
        await asyncio.gather(
            *(lookup_domain(d, family, nameserver, options.connect_timeout) for d in domains)
        )
    )
    opener = _default_opener(options)
    bound = asyncio.Semaphore(max(1, options.max_hosts_in_flight))

    async def one(item: _Planned) -> HostResult:
        async with bound:
            result = await probe_host(item.target, options, opener)
        return dataclasses.replace(result, domain=item.domain, mx=item.mx)

    results: list[HostResult] = []
    for mail in mails:  # grouped by domain, in the order given
        planned, failed = _plan(mail, options.default_ports, family == "both")
        results.extend(failed)
        results.extend(await asyncio.gather(*(one(item) for item in planned)))
    return mails, results


def probe_domains(
    domains: Sequence[str],
    options: ProbeOptions,
    family: Family = "both",
    nameserver: tuple[str, int] | None = None,
) -> tuple[list[DomainMail], list[HostResult]]:
    """Probe every mail exchanger of every domain (RFC 5321 §5.1; a null MX, RFC 7505, is
    reported and not probed) on each of the options' ports: the domains' DNS facts and one
    result per exchanger address and port, grouped by domain."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(_probe_domains_async(domains, options, family, nameserver))


def probe_targets(
    targets: Sequence[str | Target],
    options: ProbeOptions | None = None,
    opener_factory: OpenerFactory = _default_opener,
) -> list[HostResult]:
    """Probe every target (host, ip or host:port; a host without a port on each of the
    options' ports); results in the order given."""
    options = options or ProbeOptions()
    parsed = expand_targets(targets, options.default_ports)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(probe_targets_async(parsed, options, opener_factory))


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed: on a fleet the probe's own CPU is most of its time, and
    uvloop's loop spends less of it per reply (docs/performance.md). RELAYGUARD_EVENT_LOOP=asyncio
    chooses the standard loop (the benchmark compares both)."""
    if os.environ.get("RELAYGUARD_EVENT_LOOP") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
