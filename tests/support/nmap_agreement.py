"""Compare relayguard and nmap's smtp-open-relay test by test, host by host (pure, no I/O).

Inputs: relayguard's `relayguard.probe/1` document and nmap's -oX document over the same
hosts (nmap run with -vv, so that it lists every relayed pair). nmap's sixteen tests are
relayguard's catalog tests `nmap-01`..`nmap-16` (the `nmap` field of each test record,
src/relayguard/probe/catalog.py); the pairs nmap prints are turned back into test numbers with
`support.nmap.nmap_pairs`, the harness's own copy of nmap's table (shared with nothing in
relayguard), so a drift of either side shows up as envelopes that do not match.

Per test and host the result is one of:
- agree: both relayed, or both did not;
- disagree: one relayed and the other did not, with the reason when it is a known one
  (`explain_test`); an unknown reason is said to be unexplained;
- nmap no answer: nmap's run stopped before it (nmap uses one connection and gives up when
  the server closes it, and stops at the first 530) or nmap printed no result;
- relayguard no answer: relayguard could not judge the test (an error, not an answer).

Used by benchmarks/bench_probe.py (scenario m) and tested by tests/probe/test_nmap_comparison.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from support.nmap import NmapConclusion, nmap_pairs, parse_script_output, srvname_from_banner

NMAP_TESTS = range(1, 17)
# relayguard outcomes that are its answer "did not relay" (vocabulary.Outcome values)
NOT_RELAYED = frozenset({"refused", "deferred", "auth_required", "accepted"})


class NmapStatus(StrEnum):
    RELAYED = "relayed"  # nmap listed the pair
    NOT_RELAYED = "not relayed"  # nmap ran the test and did not list it
    NO_ANSWER = "no answer"  # nmap's run ended before the test, or printed nothing usable


class Agreement(StrEnum):
    AGREE = "agree"
    DISAGREE = "disagree"
    NMAP_NO_ANSWER = "nmap no answer"
    RELAYGUARD_NO_ANSWER = "relayguard no answer"


@dataclass(frozen=True)
class NmapHost:
    """nmap's smtp-open-relay result for one host, as its -oX document gives it."""

    address: str
    output: str
    conclusion: NmapConclusion
    relayed_pairs: tuple[tuple[str, str], ...]
    error: str | None

    @property
    def verdict(self) -> str:
        """nmap's conclusion as a relayguard verdict ("authentication needed" is closed)."""
        return {
            NmapConclusion.OPEN: "open",
            NmapConclusion.CLOSED: "closed",
            NmapConclusion.AUTH_REQUIRED: "closed",
        }.get(self.conclusion, "inconclusive")


def nmap_hosts_from_xml(xml_text: str, port: int = 25) -> dict[str, NmapHost]:
    """Every host of an nmap -oX document with its smtp-open-relay result on `port`."""
    root = ET.fromstring(xml_text)  # noqa: S314 - nmap's own output, produced by the caller
    finished = root.find("runstats/finished")
    if finished is not None and finished.get("exit") == "error":
        raise RuntimeError(f"nmap failed: {finished.get('errormsg')}")
    hosts: dict[str, NmapHost] = {}
    for host in root.iterfind("host"):
        address = host.find("address")
        if address is None:
            continue
        output = ""
        for script in host.iterfind(f"ports/port[@portid='{port}']/script[@id='smtp-open-relay']"):
            output = script.get("output", "")
        conclusion, pairs, error = parse_script_output(output)
        addr = address.get("addr", "")
        hosts[addr] = NmapHost(addr, output, conclusion, pairs, error)
    return hosts


def nmap_statuses(host: NmapHost, pairs: Mapping[int, tuple[str, str]]) -> dict[int, NmapStatus]:
    """What nmap says about each of its tests on this host.

    nmap runs its tests in order on one connection: after a break-off (the error line it
    appends) the tests after the last relayed one are unanswered; "authentication needed"
    and a bare error discard everything (smtp-open-relay.nse returns only the message).
    Raises ValueError when nmap printed a pair its table does not have."""
    relayed = set(_relayed_numbers(host, pairs))
    if host.conclusion is NmapConclusion.CLOSED:
        return {n: NmapStatus.NOT_RELAYED for n in NMAP_TESTS}
    if host.conclusion is NmapConclusion.OPEN:
        reached = max(relayed) if host.error is not None else max(NMAP_TESTS)
        return {
            n: (
                NmapStatus.RELAYED
                if n in relayed
                else NmapStatus.NOT_RELAYED
                if n <= reached
                else NmapStatus.NO_ANSWER
            )
            for n in NMAP_TESTS
        }
    return {n: NmapStatus.NO_ANSWER for n in NMAP_TESTS}


def _relayed_numbers(host: NmapHost, pairs: Mapping[int, tuple[str, str]]) -> list[int]:
    by_pair = {pair: n for n, pair in pairs.items()}
    unknown = [p for p in host.relayed_pairs if p not in by_pair]
    if unknown:
        raise ValueError(f"{host.address}: nmap printed pairs not in its table: {unknown}")
    return [by_pair[p] for p in host.relayed_pairs]


def host_srvname(rg_host: Mapping[str, Any]) -> str:
    """SRVNAME as nmap derives it: from the banner (relayguard stores it without the code),
    else relayguard's own reading (nmap falls back to the EHLO reply)."""
    return srvname_from_banner("220 " + str(rg_host.get("banner", ""))) or str(
        rg_host.get("srvname") or ""
    )


def agreement(rg_outcome: str, nmap: NmapStatus) -> Agreement:
    if nmap is NmapStatus.NO_ANSWER:
        return Agreement.NMAP_NO_ANSWER
    if rg_outcome != "relayed" and rg_outcome not in NOT_RELAYED:
        return Agreement.RELAYGUARD_NO_ANSWER
    same = (rg_outcome == "relayed") == (nmap is NmapStatus.RELAYED)
    return Agreement.AGREE if same else Agreement.DISAGREE


class Reason(StrEnum):
    """The kinds of difference the comparison knows how to explain."""

    CONTROL = "control"  # relayguard's control shows acceptance of any mailbox, not relaying
    NMAP_BROKE_OFF = "nmap broke off"  # nmap's one session ended (the server closed it)
    NMAP_AUTH_STOP = "nmap stopped at 530"
    NMAP_NO_RESULT = "nmap no result"
    RELAYGUARD_ERROR = "relayguard error"
    UNEXPLAINED = "unexplained"


# What each kind of difference means; the comparison gives each difference its own detail.
REASONS: dict[Reason, str] = {
    Reason.CONTROL: (
        "both saw a 2xx at RCPT to a routed form addressed to one of the server's domains; "
        "relayguard's control, an unknown mailbox at that domain, was accepted too: the server "
        "takes any mailbox there, so the 2xx does not show the form relayed (it may bounce it "
        "later, or pass it on to that domain). nmap counts every 2xx; relayguard reports the "
        "acceptance under RFC 2505 1.5/1.6 instead (judge.apply_control). An Exchange twin's "
        "own decision (lab_disposition) tells which it is: ndr, relay-self (passed on to the "
        "domain the recipient names, the server's own address literal or name: nothing goes "
        "to the foreign domain) or relay (towards the foreign domain: a relay the control "
        "could not tell from accept-and-bounce, because the server accepts any mailbox at "
        "that domain at RCPT time)"
    ),
    Reason.NMAP_BROKE_OFF: (
        "nmap runs its 16 tests on one connection and stops when the server closes it (Exim, "
        "for one, after more than smtp_max_synprot_errors = 3 syntax errors: nmap's tests 4-16 "
        "send MAIL FROM:<antispam@[IP]>, which Exim refuses with 501 while "
        "allow_domain_literals is false, its default; docs/sources.md#exim-domain-literals); "
        "relayguard reconnects and answered every test"
    ),
    Reason.NMAP_AUTH_STOP: "nmap stops at the first 530 and reports no test result",
    Reason.NMAP_NO_RESULT: "nmap printed no smtp-open-relay result for this host",
    Reason.RELAYGUARD_ERROR: "relayguard could not judge the test (an error, not an answer)",
    Reason.UNEXPLAINED: "a difference none of the known reasons covers: look at it",
}


def explain_test(
    record: Mapping[str, Any], status: NmapStatus, nmap: NmapHost, connections: int
) -> tuple[Reason | None, str]:
    """Why relayguard and nmap differ on one test: (kind, this test's detail); (None, '')
    when they agree. The kinds are explained once, in REASONS."""
    outcome = str(record["outcome"])
    found = agreement(outcome, status)
    answer = f"{record.get('code')} {record.get('reply', '')}".strip()
    if found is Agreement.AGREE:
        return None, ""
    if found is Agreement.NMAP_NO_ANSWER:
        if nmap.conclusion is NmapConclusion.AUTH_REQUIRED:
            return Reason.NMAP_AUTH_STOP, f"relayguard: {outcome} ({answer})"
        if nmap.conclusion is NmapConclusion.NO_RESULT:
            return Reason.NMAP_NO_RESULT, f"relayguard: {outcome} ({answer})"
        return (
            Reason.NMAP_BROKE_OFF,
            f"nmap: {nmap.error}; relayguard: {outcome} ({answer}), {connections} connections",
        )
    if found is Agreement.RELAYGUARD_NO_ANSWER:
        return Reason.RELAYGUARD_ERROR, str(record.get("error") or answer)
    if outcome == "accepted" and status is NmapStatus.RELAYED:
        return Reason.CONTROL, f"{answer}; {record.get('control')}"
    return Reason.UNEXPLAINED, f"relayguard {outcome} ({answer}), nmap {status.value}"


@dataclass(frozen=True)
class TestComparison:
    nmap: int
    mail_from: str
    rcpt_to: str
    same_envelope: bool  # relayguard sent exactly nmap's pair
    relayguard: str  # outcome
    relayguard_reply: str
    decided_at: str  # "mail": relayguard's test was decided by a refused MAIL FROM
    # An Exchange twin's own decision for the envelope (deliver, ndr, none = refused, relay
    # towards the foreign domain, relay-self = to the server's own literal or name); '' for a
    # real server, which does not say
    lab_disposition: str
    nmap_status: str
    agreement: str
    reason: str  # a Reason value, '' when they agree
    detail: str  # this test's evidence for the reason


@dataclass(frozen=True)
class HostComparison:
    address: str
    name: str
    platform: str
    profile: str
    expected: str  # the lab's verdict for the profile ('' when unknown)
    relayguard: str
    nmap: str
    nmap_output: str
    agree: bool
    reason: str
    explanation: str
    tests: tuple[TestComparison, ...]


def compare_host(
    rg_host: Mapping[str, Any], nmap: NmapHost, lab_host: Mapping[str, Any] | None = None
) -> HostComparison:
    """relayguard's and nmap's results on one host, test by test and as verdicts."""
    address = str(rg_host["address"])
    pairs = nmap_pairs(address, host_srvname(rg_host))
    statuses = nmap_statuses(nmap, pairs)
    records = {int(t["nmap"]): t for t in rg_host["tests"] if t.get("nmap")}
    missing = sorted(set(NMAP_TESTS) - set(records))
    if missing:
        raise ValueError(f"{address}: relayguard's result has no nmap tests {missing}")
    connections = int(rg_host.get("connections", 0))
    lab = lab_host or {}
    dispositions: Mapping[int, str] = lab.get("dispositions") or {}
    why = {n: explain_test(records[n], statuses[n], nmap, connections) for n in NMAP_TESTS}
    tests = tuple(
        TestComparison(
            nmap=n,
            mail_from=str(records[n]["mail_from"]),
            rcpt_to=str(records[n]["rcpt_to"]),
            same_envelope=(records[n]["mail_from"], records[n]["rcpt_to"]) == pairs[n],
            relayguard=str(records[n]["outcome"]),
            relayguard_reply=f"{records[n].get('code')} {records[n].get('reply', '')}".strip(),
            decided_at=str(records[n].get("decided_at", "rcpt")),
            lab_disposition=str(dispositions.get(n, "")),
            nmap_status=statuses[n].value,
            agreement=agreement(str(records[n]["outcome"]), statuses[n]).value,
            reason=str(why[n][0] or ""),
            detail=why[n][1],
        )
        for n in NMAP_TESTS
    )
    ours = str(rg_host["verdict"])
    reason, explanation = explain_host(ours, nmap, tests)
    return HostComparison(
        address=address,
        name=str(lab.get("name", address)),
        platform=str(lab.get("platform", "")),
        profile=str(lab.get("profile", "")),
        expected=str(lab.get("expected", "")),
        relayguard=ours,
        nmap=nmap.verdict,
        nmap_output=nmap.output,
        agree=ours == nmap.verdict,
        reason=reason.value if reason else "",
        explanation=explanation,
        tests=tests,
    )


def explain_host(
    ours: str, nmap: NmapHost, tests: Sequence[TestComparison]
) -> tuple[Reason | None, str]:
    """Why the host verdicts differ: (kind, text); (None, '') when they agree."""
    if ours == nmap.verdict:
        return None, ""
    if nmap.verdict == "inconclusive":
        reason = nmap.error or nmap.conclusion.value
        return (
            Reason.NMAP_BROKE_OFF if nmap.error else Reason.NMAP_NO_RESULT,
            f"nmap reached no conclusion ({reason}); relayguard answered every test",
        )
    nmap_relayed = [t for t in tests if t.nmap_status == NmapStatus.RELAYED.value]
    if (
        nmap.verdict == "open"
        and ours != "open"
        and nmap_relayed
        and all(t.relayguard == "accepted" for t in nmap_relayed)
    ):
        numbers = ", ".join(str(t.nmap) for t in nmap_relayed)
        twin = sorted({t.lab_disposition for t in nmap_relayed if t.lab_disposition})
        decided = f"; the lab twin's own decision for them: {', '.join(twin)}" if twin else ""
        return (
            Reason.CONTROL,
            f"nmap's 'open' rests only on tests {numbers}, which relayguard's control shows "
            "the server accepts for any mailbox at that domain (accept, then bounce: RFC 2505 "
            f"1.5/1.6), not relaying{decided}",
        )
    first = nmap.output.splitlines()[0] if nmap.output else nmap.conclusion.value
    return Reason.UNEXPLAINED, f"relayguard {ours}, nmap {nmap.verdict} ({first})"


# The columns of each host's `tests` rows in the fleet comparison (one short row per test).
TEST_COLUMNS = ("nmap", "relayguard", "decided_at", "nmap_status", "lab_disposition", "agreement")


def _compact(host: HostComparison) -> dict[str, Any]:
    """A host's comparison with its tests as rows of TEST_COLUMNS (the envelopes are in
    relayguard's document; the differences, with their details, in `test_differences`)."""
    out = {k: v for k, v in asdict(host).items() if k != "tests"}
    out["same_envelopes"] = all(t.same_envelope for t in host.tests)
    out["tests"] = [[getattr(t, column) for column in TEST_COLUMNS] for t in host.tests]
    return out


def compare_fleet(
    document: Mapping[str, Any],
    nmap_hosts: Mapping[str, NmapHost],
    lab_hosts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The whole comparison: per host and test, the tallies, and every difference explained."""
    labs = {str(h["address"]): h for h in lab_hosts}
    hosts: list[HostComparison] = []
    for rg_host in document["hosts"]:
        address = str(rg_host["address"])
        if address not in nmap_hosts:
            raise ValueError(f"{address}: nmap has no result for this host")
        hosts.append(compare_host(rg_host, nmap_hosts[address], labs.get(address)))
    tally = {a.value: 0 for a in Agreement}
    reasons: dict[str, int] = {}
    for host in hosts:
        for test in host.tests:
            tally[test.agreement] += 1
            if test.reason:
                reasons[test.reason] = reasons.get(test.reason, 0) + 1
    differences: list[dict[str, Any]] = [
        {"host": h.name, "address": h.address, "nmap": t.nmap, "rcpt_to": t.rcpt_to,
         "relayguard": t.relayguard, "nmap_status": t.nmap_status,
         "lab_disposition": t.lab_disposition, "agreement": t.agreement,
         "reason": t.reason, "detail": t.detail}
        for h in hosts
        for t in h.tests
        if t.agreement != Agreement.AGREE.value
    ]  # fmt: skip
    host_differences: list[dict[str, Any]] = [
        {"host": h.name, "address": h.address, "expected": h.expected,
         "relayguard": h.relayguard, "nmap": h.nmap, "reason": h.reason,
         "explanation": h.explanation}
        for h in hosts
        if not h.agree
    ]  # fmt: skip
    by_disposition: dict[str, int] = {}
    for host in hosts:
        for t in host.tests:
            if t.lab_disposition:
                key = f"relayguard {t.relayguard} / nmap {t.nmap_status} / twin {t.lab_disposition}"
                by_disposition[key] = by_disposition.get(key, 0) + 1
    unexplained = sum(
        1 for d in [*differences, *host_differences] if d["reason"] == Reason.UNEXPLAINED
    )
    return {
        "hosts": len(hosts),
        "tests": sum(tally.values()),
        "per_test": tally,
        "per_test_reasons": reasons,
        # every test on an Exchange twin: both tools' answers beside the twin's own decision
        "twin_tests_by_disposition": dict(sorted(by_disposition.items())),
        # tests both answered "not relayed" because the server refused the sender at MAIL
        # FROM: the recipient form was never tried by either tool
        "agree_decided_at_mail": sum(
            1
            for h in hosts
            for t in h.tests
            if t.agreement == Agreement.AGREE and t.decided_at == "mail"
        ),
        "envelopes_identical": all(t.same_envelope for h in hosts for t in h.tests),
        "host_verdicts_agree": sum(1 for h in hosts if h.agree),
        "relayguard_matches_lab": sum(1 for h in hosts if h.relayguard == h.expected),
        "nmap_matches_lab": sum(1 for h in hosts if h.nmap == h.expected),
        "unexplained": unexplained,
        "host_differences": host_differences,
        "test_differences": differences,
        "reasons": {r.value: REASONS[r] for r in Reason},
        "test_columns": list(TEST_COLUMNS),
        "by_host": [_compact(h) for h in hosts],
    }
