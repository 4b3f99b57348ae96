"""Can the controller open a TCP connection to an endpoint? Many endpoints at once.

secure-relay.yml's preflight asks it once per batch (`modules/relay_reachability.py`) for every
host's SMTP target and management channel, instead of one `wait_for` process per host and
port. A connection is opened and closed at once: nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from relayguard.probe.targets import Target, TargetError, parse_target

MAX_IN_FLIGHT = 256


@dataclass(frozen=True)
class Reach:
    endpoint: str
    reachable: bool
    error: str | None = None


def endpoint(field: str, spec: object, default_port: int | None = None) -> Target:
    """`host:port`, `[v6]:port` (or a bare host with a default port); an error naming the field."""
    if not isinstance(spec, str):
        raise TargetError(f"{field}: {spec!r} is not host:port")
    try:
        target = parse_target(spec, default_port or 0)
    except TargetError as exc:
        raise TargetError(f"{field}: {exc}") from None
    if target.port == 0:
        raise TargetError(f"{field}: {spec!r} names no port (give host:port, [IPv6]:port)")
    return target


async def _reach(target: Target, timeout: float, bound: asyncio.Semaphore) -> Reach:
    async with bound:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), timeout
            )
        except TimeoutError:
            return Reach(str(target), False, f"no answer within {timeout:g}s")
        except OSError as exc:
            # asyncio puts "Connect call failed" in strerror; the errno says why
            return Reach(str(target), False, os.strerror(exc.errno) if exc.errno else str(exc))
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):  # it answered; how it closes is moot
            await asyncio.wait_for(writer.wait_closed(), timeout)
        return Reach(str(target), True)


def reach_all(targets: Sequence[Target], timeout: float) -> list[Reach]:
    """One attempt per distinct endpoint, all at once (bounded); results in the order given."""

    async def run() -> list[Reach]:
        bound = asyncio.Semaphore(MAX_IN_FLIGHT)
        distinct = list(dict.fromkeys(targets))
        found = await asyncio.gather(*(_reach(t, timeout, bound) for t in distinct))
        by_target = dict(zip(distinct, found, strict=True))
        return [by_target[t] for t in targets]

    return asyncio.run(run())
