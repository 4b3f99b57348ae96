"""Probing through a real SSH jump host (sshd in a network namespace, keys made here).

The mail host trusts the controller's LAN, so a direct probe sees an open relay; through the
jump host the probe sees what an outsider sees. Host keys are checked against known_hosts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from postfix_remediation import netlab
from postfix_remediation.conftest import INBOUND_DOMAIN, MailNetwork
from postfix_remediation.relaycheck import rcpt_code, verdict, verdict_via
from relayguard.probe import ProbeOptions
from relayguard.vantage import (
    HostKeyMismatch,
    HostKeyUnknown,
    SshAuthFailed,
    SshConnectFailed,
    SshJump,
    SshSettings,
    parse_vantage,
    probe_through,
)

pytestmark = [pytest.mark.realserver, pytest.mark.root]


def fingerprint(public_key: Path) -> str:
    listing = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)],
        check=True,
        capture_output=True,
        text=True,
    )
    return listing.stdout.split()[1]


def known_hosts(lab: MailNetwork, *lines: str) -> Path:
    path = lab.work / "known_hosts"
    path.write_text("".join(lines))
    return path


def settings(lab: MailNetwork, known: Path, accept_unknown: bool = False) -> SshSettings:
    return SshSettings(
        known_hosts=(known,),
        key_file=lab.client_key,
        use_agent=False,
        look_for_keys=False,
        accept_unknown_host_key=accept_unknown,
    )


def jump(lab: MailNetwork, known: Path, port: int = netlab.SSH_PORT, **kw: bool) -> SshJump:
    return SshJump(parse_vantage(lab.jump_spec(port)), settings(lab, known, **kw))


def test_the_jump_host_shows_what_an_outsider_sees(mail_network: MailNetwork) -> None:
    lab = mail_network
    postfix = lab.start_postfix(lab.trusting_controller_lan())
    jump_sshd = lab.start_jump_sshd()

    assert verdict(lab.target) == "open"  # from the trusted controller: misleading
    known = known_hosts(lab, jump_sshd.known_hosts_line())
    with jump(lab, known) as via:
        assert via.accepted_host_key is None
        assert via.host_key is not None
        assert via.host_key.endswith(fingerprint(jump_sshd.host_key.with_suffix(".pub")))
        found, reason = verdict_via(via, lab.target)
        assert found == "closed", reason  # Debian's defer_unauth_destination, for outsiders
        with via.forward(lab.addr.mail, 25) as forward:
            assert rcpt_code(forward.host, forward.port, f"postmaster@{INBOUND_DOMAIN}") == 250
            assert rcpt_code(forward.host, forward.port, "relaytest@example.com") == 454
    log = postfix.maillog_text()
    assert f"connect from unknown[{netlab.JUMP_INSIDE}]" in log
    assert f"connect from unknown[{lab.addr.controller}]" in log


def test_an_unknown_host_key_is_refused_unless_explicitly_accepted(
    mail_network: MailNetwork,
) -> None:
    lab = mail_network
    jump_sshd = lab.start_jump_sshd()
    expected = fingerprint(jump_sshd.host_key.with_suffix(".pub"))
    empty = known_hosts(lab)

    with pytest.raises(HostKeyUnknown) as caught:
        jump(lab, empty).connect()
    message = str(caught.value)
    assert f"host key of {lab.jump_spec()} is unknown" in message
    assert expected in message and str(empty) in message
    assert "BEGIN" not in message

    with jump(lab, empty, accept_unknown=True) as via:
        assert via.accepted_host_key == f"ssh-ed25519 {expected}"
        with via.forward(lab.addr.jump, netlab.SSH_PORT) as forward:  # a channel works
            banner = netlab.wait_for_banner(forward.host, forward.port, b"SSH-2.0-")
            assert banner.startswith(b"SSH-2.0-OpenSSH")
    assert empty.read_text() == ""  # accepting for one run never writes known_hosts


def test_a_host_key_mismatch_is_refused(mail_network: MailNetwork) -> None:
    lab = mail_network
    jump_sshd = lab.start_jump_sshd()
    impostor = netlab.make_key(lab.work / "other_host_key", "someone-else")
    known = known_hosts(lab, jump_sshd.known_hosts_line(impostor))

    for accept in (False, True):  # accepting unknown keys never accepts a changed one
        with pytest.raises(HostKeyMismatch) as caught:
            jump(lab, known, accept_unknown=accept).connect()
        message = str(caught.value)
        assert "does NOT match known_hosts" in message
        assert fingerprint(jump_sshd.host_key.with_suffix(".pub")) in message
        assert fingerprint(impostor.with_suffix(".pub")) in message
        assert f"ssh-keygen -R '[{lab.addr.jump}]:{netlab.SSH_PORT}'" in message


def test_a_key_the_jump_host_does_not_know_is_refused(mail_network: MailNetwork) -> None:
    lab = mail_network
    jump_sshd = lab.start_jump_sshd()
    stranger = netlab.make_key(lab.work / "stranger_key")
    known = known_hosts(lab, jump_sshd.known_hosts_line())
    wrong = SshSettings(known_hosts=(known,), key_file=stranger, use_agent=False)
    with pytest.raises(SshAuthFailed) as caught:
        SshJump(parse_vantage(lab.jump_spec()), wrong).connect()
    assert f"authentication as root on {lab.jump_spec()} failed" in str(caught.value)
    assert str(stranger) in str(caught.value)


def test_an_unreachable_jump_host_is_a_clear_error(mail_network: MailNetwork) -> None:
    lab = mail_network
    with pytest.raises(SshConnectFailed, match="cannot reach jump host"):
        jump(lab, known_hosts(lab), port=2299).connect()


def test_channel_failures_make_the_probe_inconclusive_with_the_reason(
    mail_network: MailNetwork,
) -> None:
    lab = mail_network
    lab.start_postfix(lab.trusting_controller_lan())
    mail = lab.addr.mail
    open_jump = lab.start_jump_sshd()
    strict_jump = lab.start_jump_sshd(
        "strict-jump-sshd", port=2223, extra_config=f"PermitOpen {mail}:25\n"
    )
    known = known_hosts(lab, open_jump.known_hosts_line(), strict_jump.known_hosts_line())

    with jump(lab, known) as via:
        found, reason = verdict_via(via, f"{mail}:2525")  # nothing listens there
    assert found == "inconclusive"
    assert "SSH_OPEN_CONNECT_FAILED" in reason and f"{mail}:2525" in reason

    with jump(lab, known, port=2223) as via:
        found, reason = verdict_via(via, f"{mail}:{netlab.SSH_PORT}")
        assert found == "inconclusive"
        assert "SSH_OPEN_ADMINISTRATIVELY_PROHIBITED" in reason
        allowed, why = verdict_via(via, f"{mail}:25")  # PermitOpen lets this through
        assert allowed == "closed", why


def test_probe_through_a_vantage_labels_results_and_reports_an_unusable_one(
    mail_network: MailNetwork,
) -> None:
    lab = mail_network
    lab.start_postfix(lab.trusting_controller_lan())
    jump_sshd = lab.start_jump_sshd()
    spec = lab.jump_spec()
    options = ProbeOptions(command_timeout=10.0)
    targets = [lab.target, f"{lab.addr.mail}:2525"]

    good = known_hosts(lab, jump_sshd.known_hosts_line())
    results = probe_through(parse_vantage(spec), targets, options, settings(lab, good))
    assert [r.verdict.value for r in results] == ["closed", "inconclusive"]
    assert all(r.vantage == spec for r in results)
    assert results[0].to_dict()["vantage"] == spec

    unknown = lab.work / "empty_known_hosts"
    unknown.write_text("")
    results = probe_through(parse_vantage(spec), targets, options, settings(lab, unknown))
    assert [r.verdict.value for r in results] == ["inconclusive", "inconclusive"]
    assert all(f"vantage {spec} unusable: host key" in r.reason for r in results)


def test_cli_via_gives_the_outsiders_verdict_beside_the_direct_one(
    mail_network: MailNetwork, tmp_path: Path
) -> None:
    """`relayguard probe --via direct --via ssh://…`: one verdict per vantage, in the JSON."""
    import json
    import sys

    lab = mail_network
    lab.start_postfix(lab.trusting_controller_lan())
    jump_sshd = lab.start_jump_sshd()
    known = known_hosts(lab, jump_sshd.known_hosts_line())
    spec = lab.jump_spec(netlab.SSH_PORT)
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "relayguard"),
            "probe",
            "--json",
            "--timeout",
            "10",
            "--via",
            "direct",
            "--via",
            spec,
            "--ssh-key",
            str(lab.client_key),
            "--known-hosts",
            str(known),
            lab.target,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr  # open from the trusted LAN
    hosts = json.loads(proc.stdout)["hosts"]
    assert [(h["vantage"], h["verdict"]) for h in hosts] == [
        ("direct", "open"),
        (spec, "closed"),
    ]


def test_cli_via_refuses_an_unknown_host_key(mail_network: MailNetwork) -> None:
    import json
    import sys

    lab = mail_network
    lab.start_postfix(lab.trusting_controller_lan())
    lab.start_jump_sshd()
    empty = known_hosts(lab)
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "relayguard"),
            "probe",
            "--json",
            "--via",
            lab.jump_spec(netlab.SSH_PORT),
            "--ssh-key",
            str(lab.client_key),
            "--known-hosts",
            str(empty),
            lab.target,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 3
    (host,) = json.loads(proc.stdout)["hosts"]
    assert host["verdict"] == "inconclusive"
    assert "unknown" in host["reason"]
