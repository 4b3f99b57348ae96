"""Peer test: nmap 7.93's smtp-open-relay and relayguard on the same real Postfix instances.

Where nmap finishes its run, both must agree test by test on nmap's 16 (MAIL FROM, RCPT TO)
pairs (relayed or not) and on the conclusion. On `drop_after_errors` nmap gives up after the
server hangs up (its one connection dies at the next RSET) while relayguard reconnects and
judges every test: relayguard is right where nmap is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from support.nmap import NmapConclusion, nmap_pairs, run_smtp_open_relay, srvname_from_banner
from support.realserver import require_tool

from relayguard.lab.postfix.instance import PostfixInstance
from relayguard.vocabulary import Outcome, Verdict

from .conftest import NMAP_SOURCE, PROBE_SOURCE
from .harness import MaillogWindow, run_probe

pytestmark = [pytest.mark.realserver, pytest.mark.root]


def _pairs_for(server: PostfixInstance) -> dict[int, tuple[str, str]]:
    assert server.banner is not None
    srvname = srvname_from_banner(server.banner)
    assert srvname == server.hostname, server.banner
    return nmap_pairs(server.address, srvname)


@pytest.mark.parametrize("profile_name", ["open_relay", "closed", "debian_default"])
def test_nmap_and_relayguard_agree_per_test(
    profile_name: str,
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
) -> None:
    require_tool("nmap")
    server: PostfixInstance = request.getfixturevalue(f"{profile_name}_server")
    pairs = _pairs_for(server)

    nmap_run = run_smtp_open_relay(server.address, server.port, NMAP_SOURCE)
    probe = run_probe(server.target, PROBE_SOURCE)

    numbered = probe.nmap_tests()
    assert set(numbered) == set(pairs)
    # relayguard sends nmap's address forms exactly, so the comparison is like for like.
    sent = {n: (t["mail_from"], t["rcpt_to"]) for n, t in numbered.items()}
    assert sent == pairs
    assert nmap_run.conclusion in {NmapConclusion.OPEN, NmapConclusion.CLOSED}, nmap_run.output
    assert nmap_run.error is None, nmap_run.output

    ours = {n for n, t in numbered.items() if t["outcome"] == Outcome.RELAYED}
    theirs = set(nmap_run.relayed_numbers(pairs))
    record_property("nmap_relayed", sorted(theirs))
    record_property("relayguard_relayed", sorted(ours))
    assert ours == theirs, f"nmap: {nmap_run.output}\nrelayguard: {probe.summary()}"
    nmap_says_open = nmap_run.conclusion == NmapConclusion.OPEN
    assert nmap_says_open == (probe.host["verdict"] == Verdict.OPEN), probe.summary()


def test_nmap_gives_up_when_postfix_hangs_up_relayguard_does_not(
    drop_after_errors_server: PostfixInstance, record_property: Callable[[str, object], None]
) -> None:
    require_tool("nmap")
    server = drop_after_errors_server
    pairs = _pairs_for(server)
    limit = int(server.postconf("smtpd_hard_error_limit"))

    log = MaillogWindow(server)
    nmap_run = run_smtp_open_relay(server.address, server.port, NMAP_SOURCE)
    text = log.settled(NMAP_SOURCE)
    record_property("nmap_output", nmap_run.output)

    # What nmap really does: its first `limit` tests get 554, Postfix adds "421 ... too many
    # errors" and closes, the script's next RSET reads a closed connection, and it reports
    # that error instead of a conclusion. The remaining tests never run.
    assert nmap_run.conclusion == NmapConclusion.ERROR, nmap_run.output
    assert nmap_run.error is not None
    # "SMTP RSET: failed to receive data: connection closed" (or "...: failed to receive
    # data" when the close arrives as a reset)
    assert nmap_run.error.startswith("SMTP RSET: failed to receive data"), nmap_run.error
    nmap_rcpts = re.findall(r"reject: RCPT from \S*\[127\.0\.4\.201\]", text)
    assert len(nmap_rcpts) == limit < len(pairs), text
    assert log.connections(NMAP_SOURCE) == 1

    probe = run_probe(server.target, PROBE_SOURCE)
    numbered = probe.nmap_tests()
    assert set(numbered) == set(pairs)
    assert {t["outcome"] for t in numbered.values()} == {Outcome.REFUSED}, probe.summary()
    assert probe.host["verdict"] == Verdict.CLOSED, probe.summary()
