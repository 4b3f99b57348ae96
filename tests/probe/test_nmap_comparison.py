"""The mixed-fleet benchmark's comparison with nmap (tests/support/nmap_agreement.py): reading
nmap's -oX, mapping its 16 tests onto relayguard's catalog, and explaining each difference.
No nmap run and no server: nmap's output shapes are recorded from nmap 7.93 against the lab."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support.nmap import NmapConclusion, nmap_pairs
from support.nmap_agreement import (
    Agreement,
    NmapHost,
    NmapStatus,
    Reason,
    compare_fleet,
    compare_host,
    host_srvname,
    nmap_hosts_from_xml,
    nmap_statuses,
)

from relayguard.probe.catalog import RELAY_TESTS, AddressContext, render

IP = "127.0.34.24"
SRVNAME = "exim-open-relay-0001.relayguard.test"
BANNER = f"{SRVNAME} ESMTP Exim 4.96 Sat, 05 Dec 2026 01:14:50 +0000"  # as relayguard keeps it
PAIRS = nmap_pairs(IP, SRVNAME)

# nmap 7.93 on the lab's open Exim (-vv -oX -): three tests relayed, then Exim closed the
# connection (its syntax-error limit) and the script appended the error it ended on.
EXIM_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><nmaprun>'
    '<host><status state="up"/><address addr="127.0.34.24" addrtype="ipv4"/>'
    '<ports><port protocol="tcp" portid="25"><state state="open"/>'
    '<script id="smtp-open-relay" output="Server is an open relay (4/16 tests)&#xa;'
    " MAIL FROM:&lt;&gt; -&gt; RCPT TO:&lt;relaytest@example.com&gt;&#xa;"
    " MAIL FROM:&lt;antispam@example.com&gt; -&gt; RCPT TO:&lt;relaytest@example.com&gt;&#xa;"
    " MAIL FROM:&lt;antispam@exim-open-relay-0001.relayguard.test&gt; -&gt;"
    " RCPT TO:&lt;relaytest@example.com&gt;&#xa;"
    ' SMTP RSET: failed to receive data: connection closed"/></port></ports></host>'
    '<host><status state="up"/><address addr="127.0.34.25" addrtype="ipv4"/>'
    '<ports><port protocol="tcp" portid="25"><state state="open"/>'
    '<script id="smtp-open-relay" output="SMTP RSET: failed to receive data: connection closed"/>'
    "</port></ports></host>"
    '<host><status state="up"/><address addr="127.0.34.23" addrtype="ipv4"/>'
    '<ports><port protocol="tcp" portid="25"><state state="open"/>'
    '<script id="smtp-open-relay" output="Server doesn&apos;t seem to be an open relay, all'
    ' tests failed"/></port></ports></host>'
    '<runstats><finished exit="success"/></runstats></nmaprun>'
)


def nmap_xml(hosts: Mapping[str, str]) -> str:
    """An -oX document with one smtp-open-relay output per address."""
    root = ET.Element("nmaprun")
    for address, output in hosts.items():
        host = ET.SubElement(root, "host")
        ET.SubElement(host, "address", addr=address, addrtype="ipv4")
        port = ET.SubElement(ET.SubElement(host, "ports"), "port", protocol="tcp", portid="25")
        ET.SubElement(port, "script", id="smtp-open-relay", output=output)
    ET.SubElement(ET.SubElement(root, "runstats"), "finished", exit="success")
    return ET.tostring(root, encoding="unicode")


def open_output(address: str, srvname: str, numbers: list[int], error: str = "") -> str:
    pairs = nmap_pairs(address, srvname)
    lines = [f"Server is an open relay ({len(numbers) + bool(error)}/16 tests)"]
    lines += [f"MAIL FROM:{pairs[n][0]} -> RCPT TO:{pairs[n][1]}" for n in numbers]
    return "\n ".join([*lines, *([error] if error else [])])


def rg_host(
    address: str = IP,
    banner: str = BANNER,
    outcomes: Mapping[int, str] | None = None,
    verdict: str = "open",
    srvname: str = SRVNAME,
) -> dict[str, Any]:
    """relayguard's JSON for one host: the catalog's nmap tests rendered for it (nmap's
    defaults), each with the outcome given (refused otherwise)."""
    context = AddressContext("antispam", "relaytest", "example.com", address, srvname, srvname)
    outcomes = outcomes or {}
    tests = []
    for test in RELAY_TESTS:
        outcome = outcomes.get(test.nmap or 0, "refused")
        tests.append(
            {
                "id": test.id,
                "nmap": test.nmap,
                "mail_from": render(test.mail_from, context),
                "rcpt_to": render(test.rcpt_to, context),
                "outcome": outcome,
                "code": 250 if outcome in ("relayed", "accepted") else 550,
                "reply": "OK" if outcome in ("relayed", "accepted") else "relay not permitted",
                "error": "",
                "control": (
                    f"control RCPT TO:<relayguard-no-such-mailbox@{srvname}> answered 250 OK"
                    if outcome == "accepted"
                    else ""
                ),
            }
        )
    return {
        "address": address,
        "banner": banner,
        "srvname": srvname,
        "verdict": verdict,
        "connections": 3,
        "tests": tests,
    }


def test_the_catalogs_nmap_tests_are_nmaps_pairs_one_to_one() -> None:
    """The mapping the comparison rests on: catalog test nmap-NN sends nmap's test NN."""
    host = rg_host()
    sent = {t["nmap"]: (t["mail_from"], t["rcpt_to"]) for t in host["tests"] if t["nmap"]}
    assert sent == PAIRS
    assert [t.id for t in RELAY_TESTS if t.nmap] == [f"nmap-{n:02d}" for n in range(1, 17)]


def test_reads_every_host_of_an_nmap_document() -> None:
    hosts = nmap_hosts_from_xml(EXIM_XML)
    assert set(hosts) == {"127.0.34.24", "127.0.34.25", "127.0.34.23"}
    broke_off = hosts["127.0.34.24"]
    assert broke_off.conclusion is NmapConclusion.OPEN
    assert broke_off.error == "SMTP RSET: failed to receive data: connection closed"
    assert len(broke_off.relayed_pairs) == 3
    assert hosts["127.0.34.25"].conclusion is NmapConclusion.ERROR
    assert hosts["127.0.34.25"].verdict == "inconclusive"
    assert hosts["127.0.34.23"].verdict == "closed"


def test_an_nmap_run_that_failed_is_an_error_not_an_empty_fleet() -> None:
    failed = '<nmaprun><runstats><finished exit="error" errormsg="boom"/></runstats></nmaprun>'
    with pytest.raises(RuntimeError, match="boom"):
        nmap_hosts_from_xml(failed)


def test_after_a_break_off_the_tests_past_the_last_relayed_one_have_no_answer() -> None:
    statuses = nmap_statuses(nmap_hosts_from_xml(EXIM_XML)["127.0.34.24"], PAIRS)
    assert [statuses[n] for n in (1, 2, 3)] == [NmapStatus.RELAYED] * 3
    assert {statuses[n] for n in range(4, 17)} == {NmapStatus.NO_ANSWER}


def test_a_complete_open_run_says_not_relayed_for_the_pairs_it_did_not_list() -> None:
    host = nmap_hosts_from_xml(nmap_xml({IP: open_output(IP, SRVNAME, [1, 12])}))[IP]
    statuses = nmap_statuses(host, PAIRS)
    assert {n for n, s in statuses.items() if s is NmapStatus.RELAYED} == {1, 12}
    assert {n for n, s in statuses.items() if s is NmapStatus.NOT_RELAYED} == (
        set(range(1, 17)) - {1, 12}
    )


@pytest.mark.parametrize(
    ("output", "status"),
    [
        ("Server doesn't seem to be an open relay, all tests failed", NmapStatus.NOT_RELAYED),
        ("Server isn't an open relay, authentication needed", NmapStatus.NO_ANSWER),
        ("SMTP RSET: failed to receive data: connection closed", NmapStatus.NO_ANSWER),
        ("", NmapStatus.NO_ANSWER),
    ],
)
def test_conclusions_without_pairs(output: str, status: NmapStatus) -> None:
    host = nmap_hosts_from_xml(nmap_xml({IP: output}))[IP]
    assert set(nmap_statuses(host, PAIRS).values()) == {status}


def test_a_pair_outside_nmaps_table_is_an_error_not_a_silent_miss() -> None:
    """e.g. SRVNAME read differently from nmap: every SRVNAME pair would go unmatched."""
    host = nmap_hosts_from_xml(nmap_xml({IP: open_output(IP, "other.name", [3])}))[IP]
    with pytest.raises(ValueError, match="not in its table"):
        nmap_statuses(host, PAIRS)


@pytest.mark.parametrize(
    ("banner", "srvname"),
    [
        (BANNER, SRVNAME),  # relayguard keeps the banner without its code
        ("ex55n0004.corp.example ESMTP Server (Microsoft Exchange ...)", "ex55n0004.corp.example"),
        ("", SRVNAME),  # nothing nmap could read: relayguard's own reading (the EHLO name)
    ],
)  # fmt: skip
def test_srvname_is_read_the_way_nmap_reads_it(banner: str, srvname: str) -> None:
    assert host_srvname({"banner": banner, "srvname": SRVNAME}) == srvname


def test_agreeing_host_counts_every_test_as_agree() -> None:
    nmap = nmap_hosts_from_xml(nmap_xml({IP: open_output(IP, SRVNAME, [1, 2, 3])}))[IP]
    result = compare_host(rg_host(outcomes={1: "relayed", 2: "relayed", 3: "relayed"}), nmap)
    assert result.agree and result.reason == ""
    assert {t.agreement for t in result.tests} == {Agreement.AGREE.value}
    assert all(t.same_envelope for t in result.tests)


def test_control_explains_nmap_counting_an_accepted_routed_form_as_relayed() -> None:
    """ex55-sp4-closed: 250 for <relaytest@example.com@SRVNAME>, and 250 for an unknown
    mailbox at SRVNAME too: nmap says open, relayguard (and the lab) closed."""
    nmap = nmap_hosts_from_xml(nmap_xml({IP: open_output(IP, SRVNAME, [11, 16])}))[IP]
    host = rg_host(outcomes={11: "accepted", 16: "accepted"}, verdict="closed")
    twin = {n: "none" for n in range(1, 17)} | {11: "ndr", 16: "ndr"}
    lab = {"name": "ex55-sp4-closed", "expected": "closed", "dispositions": twin}
    result = compare_host(host, nmap, lab)
    differing = [t for t in result.tests if t.agreement != Agreement.AGREE.value]
    assert [t.nmap for t in differing] == [11, 16]
    assert {t.reason for t in differing} == {Reason.CONTROL.value}
    assert "relayguard-no-such-mailbox" in differing[0].detail
    assert (result.relayguard, result.nmap, result.expected) == ("closed", "open", "closed")
    assert result.reason == Reason.CONTROL.value
    assert "11, 16" in result.explanation
    assert result.explanation.endswith("the lab twin's own decision for them: ndr")
    assert [t.lab_disposition for t in differing] == ["ndr", "ndr"]


def test_a_difference_no_reason_covers_is_reported_as_unexplained() -> None:
    """nmap relayed a test relayguard saw refused: nothing known explains that."""
    nmap = nmap_hosts_from_xml(nmap_xml({IP: open_output(IP, SRVNAME, [2])}))[IP]
    result = compare_host(rg_host(verdict="closed"), nmap)
    (differing,) = [t for t in result.tests if t.agreement == Agreement.DISAGREE.value]
    assert differing.nmap == 2
    assert differing.reason == Reason.UNEXPLAINED.value
    assert result.reason == Reason.UNEXPLAINED.value


def test_relayguard_error_is_its_own_kind_not_a_disagreement() -> None:
    nmap = nmap_hosts_from_xml(nmap_xml({IP: open_output(IP, SRVNAME, [1])}))[IP]
    result = compare_host(rg_host(outcomes={1: "relayed", 5: "error"}), nmap)
    test5 = result.tests[4]
    assert test5.agreement == Agreement.RELAYGUARD_NO_ANSWER.value
    assert test5.reason == Reason.RELAYGUARD_ERROR.value


def test_an_envelope_relayguard_sent_differently_is_flagged() -> None:
    host = rg_host()
    host["tests"][0]["rcpt_to"] = "<relaytest@example.net>"
    nmap = NmapHost(IP, "", NmapConclusion.CLOSED, (), None)
    result = compare_host(host, nmap)
    assert not result.tests[0].same_envelope
    assert all(t.same_envelope for t in result.tests[1:])


def test_fleet_tallies_differences_and_host_verdicts() -> None:
    closed_ip = "127.0.34.25"
    document = {
        "hosts": [
            rg_host(outcomes={1: "relayed", 2: "relayed", 3: "relayed"}),
            rg_host(
                address=closed_ip,
                banner="exim-closed-0002.relayguard.test ESMTP Exim 4.96",
                srvname="exim-closed-0002.relayguard.test",
                verdict="closed",
            ),
        ]
    }
    lab = [
        {"address": IP, "name": "exim-open", "platform": "exim", "profile": "open_relay",
         "expected": "open"},
        {"address": closed_ip, "name": "exim-closed", "platform": "exim", "profile": "closed",
         "expected": "closed"},
    ]  # fmt: skip
    summary = compare_fleet(document, nmap_hosts_from_xml(EXIM_XML), lab)
    assert summary["hosts"] == 2 and summary["tests"] == 32
    assert summary["per_test"] == {
        "agree": 3,
        "disagree": 0,
        "nmap no answer": 29,
        "relayguard no answer": 0,
    }
    assert summary["per_test_reasons"] == {Reason.NMAP_BROKE_OFF.value: 29}
    assert summary["host_verdicts_agree"] == 1
    assert (summary["relayguard_matches_lab"], summary["nmap_matches_lab"]) == (2, 1)
    assert summary["unexplained"] == 0
    (host_difference,) = summary["host_differences"]
    assert host_difference["host"] == "exim-closed"
    assert host_difference["nmap"] == "inconclusive"
    assert summary["envelopes_identical"] is True
    assert summary["agree_decided_at_mail"] == 0
    assert set(summary["reasons"]) == {r.value for r in Reason}


def test_a_host_nmap_did_not_report_is_an_error() -> None:
    with pytest.raises(ValueError, match="nmap has no result"):
        compare_fleet({"hosts": [rg_host()]}, {})


@functools.cache
def _bench_probe() -> Any:
    """benchmarks/bench_probe.py as a module (it is a script, not a package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_probe.py"
    spec = importlib.util.spec_from_file_location("bench_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_probe"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("platform", "profile", "server", "decisions"),
    [
        # the 5.5 IMS takes any mailbox at its own name and bounces it: nmap's "open" on the
        # closed SP4 twin rests on these two
        ("exchange55", "sp4-closed", "EX55N0004", {11: "ndr", 16: "ndr", 1: "none", 6: "none"}),
        # SP2 rerouting: the %-hack at a local name goes on to example.com (lab model)
        ("exchange55", "sp2-reroute-open", "EX55N0002", {1: "relay", 6: "relay", 11: "ndr"}),
        # 2013+: a routed form at the server's own literal is passed back to the server
        ("exchange2019", "anon-relay", "EX2019N0001", {1: "relay", 5: "relay-self", 7: "none"}),
        ("exchange2019", "compliant", "EX2019N0003", {1: "none", 5: "none", 16: "none"}),
    ],
)
def test_the_twins_own_decision_for_nmaps_envelopes(
    platform: str, profile: str, server: str, decisions: dict[int, str]
) -> None:
    bench = _bench_probe()
    host = {"name": "t", "platform": platform, "profile": profile, "server": server,
            "address": "127.0.34.4"}  # fmt: skip
    srvname = f"{server.lower()}.corp.example"
    found = bench.twin_dispositions(host, "127.0.60.200", srvname)
    assert set(found) == set(range(1, 17))
    assert {n: found[n] for n in decisions} == decisions


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_the_committed_comparison_is_what_the_committed_raw_outputs_give() -> None:
    """benchmarks/results/m-comparison.json recomputed from m-relayguard.json and m-nmap.xml
    (with the twins' decisions it recorded): a change to the comparison that would change the
    published figures fails here until the benchmark is run again."""
    stored = json.loads((RESULTS / "m-comparison.json").read_text())
    document = json.loads((RESULTS / "m-relayguard.json").read_text())
    columns = stored["test_columns"]
    lab = [
        {
            **{k: h[k] for k in ("name", "platform", "profile", "expected", "address")},
            "dispositions": {
                row[columns.index("nmap")]: row[columns.index("lab_disposition")]
                for row in h["tests"]
                if row[columns.index("lab_disposition")]
            },
        }
        for h in stored["by_host"]
    ]
    again = compare_fleet(document, nmap_hosts_from_xml((RESULTS / "m-nmap.xml").read_text()), lab)
    for key in ("hosts", "tests", "per_test", "per_test_reasons", "twin_tests_by_disposition",
                "envelopes_identical", "host_verdicts_agree", "relayguard_matches_lab",
                "nmap_matches_lab", "unexplained", "by_host"):  # fmt: skip
        assert again[key] == stored[key], key
    assert [(d["host"], d["reason"]) for d in again["host_differences"]] == [
        (d["host"], d["reason"]) for d in stored["host_differences"]
    ]
    assert again["unexplained"] == 0
    assert stored["figures"]["verdict_agreement"] == f"{again['host_verdicts_agree']}/27"
