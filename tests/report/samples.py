"""Realistic sample data for report tests: probe/1 host objects and an 8-host fleet.

Shapes follow the probe's catalog (nmap's sixteen envelopes plus Exchange encapsulation
tests) and its RFC 2505 findings; addresses are RFC 5737 documentation ranges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from relayguard.report import build_report, run_metadata

F, T, D = "antispam", "relaytest", "example.com"
NMAP = "nmap 7.93 scripts/smtp-open-relay.nse"
HOSTILE_BANNER = (
    "220 pf-ok.corp.example ESMTP Postfix <script>alert('banner')</script> "
    '"quoted" & \x1b[31mred\x1b[0m ]]> |pipe| `tick` **bold** \x00nul'
)
HOSTILE_REPLY = "5.7.1 <img src=x onerror=alert(1)> Relay access denied"

_FORMS = (  # (nmap number, MAIL FROM, RCPT TO, exercises)
    (1, "<>", "<{T}@{D}>", "plain foreign recipient"),
    (2, "<{F}@{D}>", "<{T}@{D}>", "plain foreign recipient"),
    (3, "<{F}@{S}>", "<{T}@{D}>", "relay decided by the MAIL FROM domain"),
    (4, "<{F}@{I}>", "<{T}@{D}>", "relay decided by the MAIL FROM domain"),
    (5, "<{F}@{I}>", "<{T}%{D}@{I}>", "percent hack (user%domain@relay)"),
    (6, "<{F}@{I}>", "<{T}%{D}@{S}>", "percent hack (user%domain@relay)"),
    (7, "<{F}@{I}>", '<"{T}@{D}">', "quoted local part hiding a domain"),
    (8, "<{F}@{I}>", '<"{T}%{D}">', "quoted local part hiding a domain"),
    (9, "<{F}@{I}>", "<{T}@{D}@{I}>", "double @ in the recipient"),
    (10, "<{F}@{I}>", '<"{T}@{D}"@{I}>', "quoted local part hiding a domain"),
    (11, "<{F}@{I}>", "<{T}@{D}@{S}>", "double @ in the recipient"),
    (12, "<{F}@{I}>", "<@{I}:{T}@{D}>", "source route (@relay:user@domain)"),
    (13, "<{F}@{I}>", "<@{S}:{T}@{D}>", "source route (@relay:user@domain)"),
    (14, "<{F}@{I}>", "<{D}!{T}>", "UUCP bang path (domain!user)"),
    (15, "<{F}@{I}>", "<{D}!{T}@{I}>", "UUCP bang path (domain!user)"),
    (16, "<{F}@{I}>", "<{D}!{T}@{S}>", "UUCP bang path (domain!user)"),
)
ROUTING = {"percent", "quoted", "double", "source", "UUCP", "Exchange"}


def relay_tests(
    ip: str,
    srvname: str,
    relayed: set[str],
    refusal: tuple[int, str] = (554, "5.7.1 <relaytest@example.com>: Relay access denied"),
    accept: tuple[int, str] = (250, "2.1.5 Ok"),
    exchange: bool = False,
    outcome_all: str | None = None,
) -> list[dict[str, Any]]:
    """The probe's tests for one host; ids in `relayed` were accepted at RCPT time."""
    fields = {"F": F, "T": T, "D": D, "S": srvname, "I": f"[{ip}]"}
    rows = [(f"nmap-{n:02d}", n, m, r, e, NMAP) for n, m, r, e in _FORMS]
    if exchange:
        rows.append(
            (
                "imceasmtp-local",
                None,
                "<{F}@{I}>",
                "<IMCEASMTP-relaytest+40example+2Ecom@corp.example>",
                "Exchange IMCEA encapsulated address",
                "MS99-027, KB Q237927",
            )
        )
    tests = []
    for test_id, nmap, mail, rcpt, exercises, source in rows:
        if outcome_all:
            code, reply, outcome = None, None, outcome_all
        elif test_id in relayed:
            (code, reply), outcome = accept, "relayed"
        else:
            (code, reply), outcome = refusal, "refused"
        tests.append(
            {
                "id": test_id,
                "nmap": nmap,
                "mail_from": mail.format(**fields),
                "rcpt_to": rcpt.format(**fields),
                "code": code,
                "reply": reply,
                "outcome": outcome,
                "exercises": exercises,
                "source": source,
            }
        )
    return tests


def findings(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RFC 2505 findings as the probe's judge derives them."""
    judged = [t for t in tests if t["outcome"] != "skipped"]
    if not judged:
        return []
    accepted = [t["id"] for t in judged if t["outcome"] == "relayed"]
    routed = [
        t["id"]
        for t in judged
        if t["exercises"].split()[0] in ROUTING and t["outcome"] == "relayed"
    ]
    return [
        {
            "id": "refused-in-dialogue",
            "section": "1.5, 1.6",
            "title": "Relaying is refused inside the SMTP dialogue (at RCPT), not accepted and "
            "bounced later",
            "result": "fail" if accepted else "pass",
            "detail": ("foreign recipients accepted at RCPT time: " + ", ".join(accepted))
            if accepted
            else "every foreign recipient was refused in the dialogue",
        },
        {
            "id": "routing-forms-stripped",
            "section": "2.1",
            "title": "Encapsulated and source-routed addresses (%, !, @a:, IMCEA) are not relayed",
            "result": "fail" if routed else "pass",
            "detail": ("relayed through routing forms: " + ", ".join(routed))
            if routed
            else "all routing-form tests refused",
        },
        {
            "id": "null-sender-accepted",
            "section": "2 (6)",
            "title": "MAIL From:<> is not refused",
            "result": "pass",
            "detail": "accepted: 250 2.1.0 Ok",
        },
        {
            "id": "vrfy-controlled",
            "section": "2 (11)",
            "title": "VRFY is controlled",
            "result": "pass",
            "detail": "answered 252 2.0.0 Cannot VRFY user",
        },
    ]


def transcript(banner: str, srvname: str, tests: list[dict[str, Any]]) -> list[list[str]]:
    lines = [["S", banner], ["C", f"EHLO {D}"], ["S", f"250-{srvname}"], ["S", "250 8BITMIME"]]
    for t in tests:
        if t["code"] is None:
            continue
        lines += [
            ["C", "RSET"],
            ["S", "250 2.0.0 Ok"],
            ["C", f"MAIL FROM:{t['mail_from']}"],
            ["S", "250 2.1.0 Ok"],
            ["C", f"RCPT TO:{t['rcpt_to']}"],
            ["S", f"{t['code']} {t['reply']}"],
        ]
    return [*lines, ["C", "QUIT"], ["S", "221 2.0.0 Bye"]]


def probe_host(
    target: str,
    ip: str,
    banner: str,
    srvname: str,
    tests: list[dict[str, Any]],
    *,
    verdict: str | None = None,
    reason: str | None = None,
    vantage: str = "203.0.113.250",
    confirmation: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One probe/1 host object, verdict derived from the tests unless given."""
    relayed = [t["id"] for t in tests if t["outcome"] == "relayed"]
    if verdict is None:
        verdict = "open" if relayed else "closed"
    if reason is None:
        reason = (
            f"{len(relayed)}/{len(tests)} relay tests accepted at RCPT time"
            if relayed
            else f"all {len(tests)} relay tests refused"
        )
    host = {
        "target": target,
        "address": ip,
        "port": 25,
        "verdict": verdict,
        "reason": reason,
        "banner": banner,
        "srvname": srvname or None,
        "vantage": vantage,
        "tests": tests,
        "rfc2505": findings(tests),
        "transcript": transcript(banner, srvname, tests) if banner else [],
        "duration_s": 2.5 + len(relayed) * 0.1,
    }
    if confirmation is not None:
        host["confirmation"] = confirmation
        host["confirmation_evidence"] = evidence
    return host


ALL_NMAP = {f"nmap-{n:02d}" for n in range(1, 17)}
PLAIN = {"nmap-01", "nmap-02", "nmap-03", "nmap-04"}
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def _t(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timings(start: float, seconds: float) -> dict[str, Any]:
    return {
        "started": _t(start),
        "finished": _t(start + seconds / 60),
        "duration_s": seconds,
        "phases": {"probe": 3.1, "detect": 4.2, "remediate": max(seconds - 14, 0), "verify": 6.7},
    }


def ex55_banner(name: str, build: str) -> str:
    return (
        f"220 {name} Microsoft ESMTP MAIL Service, Version: {build} ready at  "
        "Sat, 1 Mar 2025 12:00:01 +0000"
    )


def fleet_hosts() -> list[dict[str, Any]]:
    """Eight hosts: mixed platforms; open, closed and inconclusive; every ending."""
    ex55 = ex55_banner("ex55-sp2.corp.example", "5.5.2448.0")
    ex55_fixed = ex55_banner("ex55-sp2.corp.example", "5.5.2650.1")
    dnr = ex55_banner("ex55-dnr.corp.example", "5.5.2653.13")
    ex19 = "220 ex2019.corp.example Microsoft ESMTP MAIL Service ready at Sat, 1 Mar 2025"
    ex16 = "220 ex2016-rb.corp.example Microsoft ESMTP MAIL Service ready at Sat, 1 Mar 2025"
    exse = "220 exse-fail.corp.example Microsoft ESMTP MAIL Service ready at Sat, 1 Mar 2025"
    pf_open = "220 pf-open.corp.example ESMTP Postfix (Debian/GNU)"
    bounce = {
        "sink": "198.51.100.25:2525",
        "received": [
            {
                "kind": "ndr",
                "mail_from": "<>",
                "rcpt_to": "<antispam@[198.51.100.25]>",
                "headers": [
                    ["From", "System Administrator <postmaster@corp.example>"],
                    ["Subject", "Undeliverable: relayguard relay test 20250301"],
                    ["X-MS-Exchange-NDR", "5.4.0 Unable to route"],
                ],
            }
        ],
    }
    relayed_msg = {
        "sink": "198.51.100.25:2525",
        "received": [
            {
                "kind": "message",
                "mail_from": "<antispam@[198.51.100.25]>",
                "rcpt_to": "<relaytest@[198.51.100.25]>",
                "headers": [
                    ["Received", "from pf-open.corp.example (192.0.2.15)"],
                    ["Subject", "relayguard relay test 20250301T120000Z-3f9a0c"],
                ],
            }
        ],
    }
    unreachable = probe_host(
        "mx-legacy.branch.example",
        "203.0.113.8",
        "",
        "",
        relay_tests("203.0.113.8", "", set(), outcome_all="skipped"),
        verdict="inconclusive",
        reason="connect to 203.0.113.8:25 timed out after 15 s",
    )
    pf_ok_tests = relay_tests(
        "192.0.2.16", "pf-ok.corp.example", set(), refusal=(554, HOSTILE_REPLY)
    )
    return [
        {
            "host": "ex55-sp2.corp.example",
            "platform": "exchange55",
            "build": {
                "version": "5.5.2448.0",
                "product": "Exchange Server 5.5",
                "level": "SP2",
                "explanation": "Exchange 5.5 SP2 (KB Q158530): the IMS relays IMCEA "
                "encapsulated addresses until msexcimc.exe 5.5.2650.1 "
                "(MS99-027, KB Q237927)",
                "source": "KB Q158530",
            },
            "patch": {"required": "5.5.2650.1", "installed": "5.5.2650.1", "compliant": True},
            "before": probe_host(
                "ex55-sp2.corp.example",
                "192.0.2.11",
                ex55,
                "ex55-sp2.corp.example",
                relay_tests(
                    "192.0.2.11",
                    "ex55-sp2.corp.example",
                    ALL_NMAP | {"imceasmtp-local"},
                    exchange=True,
                ),
            ),
            "after": probe_host(
                "ex55-sp2.corp.example",
                "192.0.2.11",
                ex55_fixed,
                "ex55-sp2.corp.example",
                relay_tests(
                    "192.0.2.11",
                    "ex55-sp2.corp.example",
                    set(),
                    refusal=(550, "5.7.1 Unable to relay for relaytest@example.com"),
                    exchange=True,
                ),
            ),
            "changes": [
                {
                    "control": "ims-routing-restrictions",
                    "target": "MSExchangeIMC\\Parameters\\RelayFlags",
                    "before": 1,
                    "after": 10,
                    "applied": True,
                },
                {
                    "control": "ims-routing-restrictions",
                    "target": "MSExchangeIMC\\Parameters\\RelayAllowList",
                    "before": [],
                    "after": ["192.0.2.0;255.255.255.0"],
                    "applied": True,
                },
                {
                    "control": "ims-patch",
                    "target": "msexcimc.exe",
                    "before": "5.5.2448.0",
                    "after": "5.5.2650.1",
                    "applied": True,
                },
            ],
            "status": "remediated",
            "timings": _timings(0, 95.0),
        },
        {
            "host": "ex55-dnr.corp.example",
            "platform": "exchange55",
            "build": {
                "version": "5.5.2653.13",
                "product": "Exchange Server 5.5",
                "level": "SP4",
                "explanation": "Exchange 5.5 SP4 (KB Q158530): encapsulation fixed",
                "source": "KB Q158530",
            },
            "patch": {"required": "5.5.2650.1", "installed": "5.5.2653.13", "compliant": True},
            "before": probe_host(
                "ex55-dnr.corp.example",
                "192.0.2.12",
                dnr,
                "ex55-dnr.corp.example",
                relay_tests(
                    "192.0.2.12",
                    "ex55-dnr.corp.example",
                    PLAIN,
                    accept=(250, "OK - relaytest@example.com"),
                    exchange=True,
                ),
                confirmation="bounced",
                evidence=bounce,
            ),
            "after": probe_host(
                "ex55-dnr.corp.example",
                "192.0.2.12",
                dnr,
                "ex55-dnr.corp.example",
                relay_tests(
                    "192.0.2.12",
                    "ex55-dnr.corp.example",
                    set(),
                    refusal=(550, "5.7.1 Unable to relay"),
                    exchange=True,
                ),
            ),
            "changes": [
                {
                    "control": "ims-reroute",
                    "target": "IMS Routing tab",
                    "before": "do not reroute",
                    "after": "reroute; relay only for 192.0.2.0/24",
                    "applied": True,
                }
            ],
            "status": "remediated",
            "timings": _timings(0, 71.5),
        },
        {
            "host": "ex2019.corp.example",
            "platform": "exchange2019",
            "build": {
                "version": "15.2.1748.10",
                "product": "Exchange Server 2019",
                "level": "CU15",
                "explanation": "Exchange 2019 CU15 (15.2.1748.10)",
                "source": "learn.microsoft.com",
            },
            "patch": {"required": "15.2.1748.10", "installed": "15.2.1748.10", "compliant": True},
            "before": probe_host(
                "ex2019.corp.example",
                "192.0.2.13",
                ex19,
                "ex2019.corp.example",
                relay_tests(
                    "192.0.2.13",
                    "ex2019.corp.example",
                    set(),
                    refusal=(550, "5.7.54 SMTP; Unable to relay recipient in non-accepted domain"),
                ),
            ),
            "after": None,
            "changes": [],
            "status": "compliant",
            "timings": _timings(1, 12.0),
        },
        {
            "host": "ex2016-rb.corp.example",
            "platform": "exchange2016",
            "build": {
                "version": "15.1.2507.6",
                "product": "Exchange Server 2016",
                "level": "CU23",
                "explanation": "Exchange 2016 CU23 (15.1.2507.6)",
                "source": None,
            },
            "patch": {"required": "15.1.2507.6", "installed": "15.1.2507.6", "compliant": True},
            "before": probe_host(
                "ex2016-rb.corp.example",
                "192.0.2.14",
                ex16,
                "ex2016-rb.corp.example",
                relay_tests("192.0.2.14", "ex2016-rb.corp.example", PLAIN),
            ),
            "after": probe_host(
                "ex2016-rb.corp.example",
                "192.0.2.14",
                ex16,
                "ex2016-rb.corp.example",
                relay_tests("192.0.2.14", "ex2016-rb.corp.example", PLAIN),
            ),
            "changes": [
                {
                    "control": "anonymous-relay-permission",
                    "target": "Receive connector EX2016\\Default Frontend EX2016",
                    "before": {"ANONYMOUS LOGON": ["ms-Exch-SMTP-Accept-Any-Recipient"]},
                    "after": {"ANONYMOUS LOGON": []},
                    "applied": True,
                },
                {
                    "control": "rollback",
                    "target": "Receive connector EX2016\\Default Frontend EX2016",
                    "before": {"ANONYMOUS LOGON": []},
                    "after": {"ANONYMOUS LOGON": ["ms-Exch-SMTP-Accept-Any-Recipient"]},
                    "applied": True,
                },
            ],
            "status": "rolled_back",
            "timings": _timings(2, 140.0),
            "error": "legitimate-flow check failed: allowed network 198.51.100.20 could not relay "
            "after the change (550 5.7.54); previous permissions restored",
        },
        {
            "host": "pf-open.corp.example",
            "platform": "postfix",
            "build": None,
            "patch": {"required": None, "installed": None, "compliant": None},
            "before": probe_host(
                "pf-open.corp.example",
                "192.0.2.15",
                pf_open,
                "pf-open.corp.example",
                relay_tests(
                    "192.0.2.15",
                    "pf-open.corp.example",
                    ALL_NMAP - {"nmap-07", "nmap-08", "nmap-10"},
                ),
                confirmation="relayed",
                evidence=relayed_msg,
            ),
            "after": probe_host(
                "pf-open.corp.example",
                "192.0.2.15",
                pf_open,
                "pf-open.corp.example",
                relay_tests("192.0.2.15", "pf-open.corp.example", set()),
            ),
            "changes": [
                {
                    "control": "postfix-mynetworks",
                    "target": "/etc/postfix/main.cf mynetworks",
                    "before": "0.0.0.0/0",
                    "after": "127.0.0.0/8 [::1]/128 192.0.2.0/24",
                    "applied": True,
                },
                {
                    "control": "postfix-relay-restrictions",
                    "target": "/etc/postfix/main.cf smtpd_relay_restrictions",
                    "before": "permit",
                    "after": "permit_mynetworks, permit_sasl_authenticated, "
                    "reject_unauth_destination",
                    "applied": True,
                },
            ],
            "status": "remediated",
            "timings": _timings(3, 33.0),
        },
        {
            "host": "pf-ok.corp.example",
            "platform": "postfix",
            "build": None,
            "patch": {"required": None, "installed": None, "compliant": None},
            "before": probe_host(
                "pf-ok.corp.example",
                "192.0.2.16",
                HOSTILE_BANNER,
                "pf-ok.corp.example",
                pf_ok_tests,
            ),
            "after": None,
            "changes": [],
            "status": "compliant",
            "timings": _timings(3, 9.0),
        },
        {
            "host": "exse-fail.corp.example",
            "platform": "exchangese",
            "build": {
                "version": "15.2.2562.17",
                "product": "Exchange Server SE",
                "level": "RTM",
                "explanation": "Exchange Server Subscription Edition RTM",
                "source": None,
            },
            "patch": {"required": "15.2.2562.17", "installed": "15.2.2562.17", "compliant": True},
            "before": probe_host(
                "exse-fail.corp.example",
                "192.0.2.17",
                exse,
                "exse-fail.corp.example",
                relay_tests("192.0.2.17", "exse-fail.corp.example", ALL_NMAP),
            ),
            "after": probe_host(
                "exse-fail.corp.example",
                "192.0.2.17",
                exse,
                "exse-fail.corp.example",
                relay_tests("192.0.2.17", "exse-fail.corp.example", ALL_NMAP),
            ),
            "changes": [
                {
                    "control": "accepted-domain-type",
                    "target": "Accepted domain *",
                    "before": "ExternalRelay",
                    "after": "removed",
                    "applied": False,
                }
            ],
            "status": "failed",
            "timings": _timings(4, 61.0),
            "error": "Remove-AcceptedDomain '*': Access is denied (WinRM, exit 1)",
        },
        {
            "host": "mx-legacy.branch.example",
            "platform": "unknown",
            "before": unreachable,
            "after": None,
            "status": "unreachable",
            "timings": _timings(5, 15.2),
            "error": "SMTP 203.0.113.8:25: connect timed out after 15 s; WinRM not tried",
        },
    ]


def fleet_metadata(mode: str = "enforce") -> dict[str, Any]:
    return run_metadata(
        mode,
        started=T0,
        finished=datetime(2025, 3, 1, 12, 7, 42, tzinfo=UTC),
        run_id="20250301T120000Z-3f9a0c",
        inventory=["inventory/example/hosts.yml"],
        probe_options={
            "port": 25,
            "external_domain": D,
            "source_address": "203.0.113.250",
            "command_timeout": 30.0,
            "vantage": "dmz-probe",
        },
        user="change-operator",
        ansible="2.19.14",
    )


def fleet_report() -> dict[str, Any]:
    return build_report(fleet_metadata(), fleet_hosts())


def audit_report() -> dict[str, Any]:
    """Audit mode before remediation: three hosts, one open, one closed, one dark."""
    hosts = [
        h
        for h in fleet_hosts()
        if h["host"] in {"pf-open.corp.example", "ex2019.corp.example", "mx-legacy.branch.example"}
    ]
    for host in hosts:
        host["after"], host["changes"] = None, []
        if host["status"] == "remediated":
            host["status"], host["error"] = "audit_failed", "open relay (audit mode: no change)"
    meta = fleet_metadata("audit")
    meta["run_id"] = "20250301T110000Z-a1b2c3"
    return build_report(meta, hosts)


def probe_sample() -> dict[str, Any]:
    """A relayguard.probe/1 document of one host, one relay test relayed, unconfirmed."""
    return {
        "schema": "relayguard.probe/1",
        "options": {"port": 25, "external_domain": "example.com"},
        "hosts": [
            probe_host(
                "192.0.2.1",
                "192.0.2.1",
                "220 mx ESMTP Postfix",
                "mx",
                relay_tests("192.0.2.1", "mx", {"nmap-01"}),
                confirmation="unconfirmed",
                evidence={"sink": "198.51.100.25:2525", "received": []},
            )
        ],
    }
