"""`relayguard probe --domain`: MX lookup against a real DNS server (NSD) on loopback.

The zone relay19.test has two mail exchangers: mx1 (127.0.2.191, closed) and mx2, dual-stack
(127.0.2.192 and ::1, open). Each address listens on two ports; the probe must find every
address of every MX and probe each on each port, grouped by domain. Sub-domains give the
other RFC 5321 §5.1 / RFC 7505 cases: no MX (the domain's own address), a null MX.
Addresses: 127.0.2.190-193 and ::1 ports 25190/25191 (this file only).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from support.nsd import nsd_serving
from support.scripted_smtp import Script, ScriptedServer, relay_policy

from relayguard.probe.mx import lookup_domain

pytestmark = [pytest.mark.realserver]

DNS = ("127.0.2.190", 25353)
PORTS = (25190, 25191)
MX1, MX2_V4, MX2_V6 = "127.0.2.191", "127.0.2.192", "::1"
ZONE = f"""$ORIGIN relay19.test.
$TTL 60
@       SOA ns hostmaster 1 3600 600 86400 60
@       NS  ns
ns      A   {DNS[0]}
@       MX  10 mx1
@       MX  20 mx2
mx1     A   {MX1}
mx2     A   {MX2_V4}
mx2     AAAA {MX2_V6}
nomx    A   127.0.2.193
nullmx  MX  0 .
"""
EXIT_OPEN = 2
EXIT_CLOSED = 0


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with nsd_serving(tmp_path_factory.mktemp("nsd"), {"relay19.test": ZONE}, *DNS) as server:
        yield server


@pytest.fixture(scope="module")
def mail_servers() -> Iterator[None]:
    with ExitStack() as stack:
        for host, open_relay in ((MX1, False), (MX2_V4, True), (MX2_V6, True)):
            for port in PORTS:
                stack.enter_context(ScriptedServer(Script(relay_policy(open_relay)), host, port))
        yield


def probe(*args: str) -> tuple[int, dict[str, Any], str]:
    command = Path(sys.executable).parent / "relayguard"
    nameserver = f"{DNS[0]}:{DNS[1]}"
    argv = [str(command), "probe", "--nameserver", nameserver, "--timeout", "5", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    document = json.loads(done.stdout) if "--json" in args and done.stdout else {}
    return done.returncode, document, done.stdout + done.stderr


def test_every_address_of_every_mx_on_every_port(
    dns_server: tuple[str, int], mail_servers: None
) -> None:
    ports = ",".join(map(str, PORTS))
    code, document, output = probe("--json", "--domain", "relay19.test", "--ports", ports)

    (domain,) = document["domains"]
    assert [(mx["name"], mx["preference"]) for mx in domain["exchangers"]] == [
        ("mx1.relay19.test", 10),
        ("mx2.relay19.test", 20),
    ], output
    verdicts = {(h["mx"], h["address"], h["port"]): h["verdict"] for h in document["hosts"]}
    expected = {("mx1.relay19.test", MX1, port): "closed" for port in PORTS} | {
        ("mx2.relay19.test", address, port): "open"
        for address in (MX2_V4, MX2_V6)
        for port in PORTS
    }
    assert verdicts == expected, output[-3000:]
    assert all(h["domain"] == "relay19.test" for h in document["hosts"]), output
    assert sorted(domain["targets"]) == sorted(h["target"] for h in document["hosts"])
    assert f"[{MX2_V6}]:{PORTS[0]}" in domain["targets"], domain["targets"]
    assert code == EXIT_OPEN, output


@pytest.mark.parametrize(("family", "addresses"), [("4", {MX1, MX2_V4}), ("6", {MX2_V6})])
def test_family_chooses_the_address_records(
    dns_server: tuple[str, int], mail_servers: None, family: str, addresses: set[str]
) -> None:
    args = ("--json", "--domain", "relay19.test", "--port", str(PORTS[0]), "--family", family)
    _, document, output = probe(*args)

    assert {h["address"] for h in document["hosts"]} == addresses, output[-3000:]


def test_table_groups_results_under_their_domain(
    dns_server: tuple[str, int], mail_servers: None
) -> None:
    code, _, output = probe("--domain", "relay19.test", "--port", str(PORTS[0]), "--family", "4")

    lines = output.splitlines()
    heading = lines.index("relay19.test: MX mx1.relay19.test (10), mx2.relay19.test (20)")
    rows = lines[heading + 1 : heading + 3]
    assert rows[0].split()[:3] == ["mx1.relay19.test", f"{MX1}:{PORTS[0]}", "closed"], output
    assert rows[1].split()[:3] == ["mx2.relay19.test", f"{MX2_V4}:{PORTS[0]}", "open"], output
    assert code == EXIT_OPEN


def test_a_null_mx_is_reported_and_not_probed(dns_server: tuple[str, int]) -> None:
    code, document, output = probe("--json", "--domain", "nullmx.relay19.test")

    assert document["hosts"] == [], output
    assert document["domains"][0]["null_mx"] is True, output
    assert code == EXIT_CLOSED, output
    _, _, table = probe("--domain", "nullmx.relay19.test")
    assert "null MX (RFC 7505): the domain accepts no mail; not probed" in table


def test_lookup_rules_of_rfc5321_section_5_1(dns_server: tuple[str, int]) -> None:
    async def both() -> tuple[Any, Any]:
        return (
            await lookup_domain("nomx.relay19.test", "both", dns_server, 5),
            await lookup_domain("missing.relay19.test", "both", dns_server, 5),
        )

    no_mx, missing = asyncio.run(both())
    # no MX record: the domain itself, preference 0 (implicit MX)
    assert no_mx.implicit_mx and no_mx.error is None, no_mx
    assert [(mx.name, mx.addresses) for mx in no_mx.exchangers] == [
        ("nomx.relay19.test", ("127.0.2.193",))
    ]
    assert missing.error is not None and "NXDOMAIN" in missing.error, missing
    assert not missing.exchangers
