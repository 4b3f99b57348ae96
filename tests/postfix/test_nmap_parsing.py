"""The nmap harness reads smtp-open-relay's output as nmap 7.93 prints it (no nmap run)."""

from __future__ import annotations

import pytest
from support.nmap import (
    NmapConclusion,
    nmap_pairs,
    parse_script_output,
    script_output_from_xml,
    srvname_from_banner,
)

PAIRS = nmap_pairs("127.0.4.1", "mx.lab.test")

# Shapes recorded from nmap 7.93 against the lab's Postfix instances (-vv -oX -).
_OPEN_OUTPUT_ATTR = (
    "Server is an open relay (2/16 tests)&#xa;"
    " MAIL FROM:&lt;&gt; -&gt; RCPT TO:&lt;relaytest@example.com&gt;&#xa;"
    " MAIL FROM:&lt;antispam@[127.0.4.1]&gt; -&gt;"
    " RCPT TO:&lt;&quot;relaytest@example.com&quot;@[127.0.4.1]&gt;"
)
OPEN_XML = (
    '<?xml version="1.0"?><nmaprun><host><ports><port protocol="tcp" portid="25">'
    f'<state state="open"/><script id="smtp-open-relay" output="{_OPEN_OUTPUT_ATTR}"/>'
    '</port></ports></host><runstats><finished exit="success"/></runstats></nmaprun>'
)
CLOSED = "Server doesn't seem to be an open relay, all tests failed"
DROPPED = "SMTP RSET: failed to receive data: connection closed"


def test_pairs_are_nmaps_sixteen_distinct_tests() -> None:
    assert len(PAIRS) == 16
    assert len(set(PAIRS.values())) == 16
    assert PAIRS[1] == ("<>", "<relaytest@example.com>")
    assert PAIRS[6] == ("<antispam@[127.0.4.1]>", "<relaytest%example.com@mx.lab.test>")
    assert PAIRS[13] == ("<antispam@[127.0.4.1]>", "<@mx.lab.test:relaytest@example.com>")
    assert PAIRS[16] == ("<antispam@[127.0.4.1]>", "<example.com!relaytest@mx.lab.test>")


@pytest.mark.parametrize(
    ("banner", "srvname"),
    [
        ("220 mx.lab.test ESMTP Postfix", "mx.lab.test"),
        (
            "220 debian-default.relayguard.test ESMTP Postfix (Debian/GNU)",
            "debian-default.relayguard.test",
        ),
        # a continuation line has no "digits, space": nmap falls back to the EHLO reply
        ("220-first.example multi-line", None),
        ("220 ", None),
    ],
)
def test_srvname_follows_nmaps_lua_pattern(banner: str, srvname: str | None) -> None:
    assert srvname_from_banner(banner) == srvname


def test_open_run_maps_back_to_test_numbers() -> None:
    output = script_output_from_xml(OPEN_XML, 25)
    conclusion, pairs, error = parse_script_output(output)
    assert (conclusion, error) == (NmapConclusion.OPEN, None)
    run_pairs = nmap_pairs("127.0.4.1", "mx.lab.test")
    relayed = {n for n, pair in run_pairs.items() if pair in pairs}
    assert relayed == {1, 10}


def test_closed_dropped_auth_and_partial_runs() -> None:
    assert parse_script_output(CLOSED) == (NmapConclusion.CLOSED, (), None)
    assert parse_script_output(DROPPED) == (NmapConclusion.ERROR, (), DROPPED)
    auth = "Server isn't an open relay, authentication needed"
    assert parse_script_output(auth)[0] == NmapConclusion.AUTH_REQUIRED
    assert parse_script_output("")[0] == NmapConclusion.NO_RESULT
    partial = (
        "Server is an open relay (1/16 tests)\n MAIL FROM:<> -> RCPT TO:<relaytest@example.com>\n"
        " Failed to issue relaytest@example.com command (SMTP RCPT: failed to receive data)"
    )
    conclusion, pairs, error = parse_script_output(partial)
    assert conclusion == NmapConclusion.OPEN
    assert pairs == (("<>", "<relaytest@example.com>"),)
    assert error is not None and error.startswith("Failed to issue")


def test_nmap_failure_is_raised() -> None:
    failed = '<nmaprun><runstats><finished exit="error" errormsg="no device"/></runstats></nmaprun>'
    with pytest.raises(RuntimeError, match="no device"):
        script_output_from_xml(failed, 25)
