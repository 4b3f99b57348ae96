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

TRUSTS_CONTROLLER_LAN = {
    "mynetworks": "127.0.0.1/32, 198.51.100.192/27",
    "relay_domains": INBOUND_DOMAIN,
}
JUMP_SPEC = f"ssh://root@{netlab.JUMP}:{netlab.SSH_PORT}"


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


def settings(lab: MailNetwork, known: Path, **extra: object) -> SshSettings:
    return SshSettings(
        known_hosts=(known,),
        key_file=lab.client_key,
        use_agent=False,
        look_for_keys=False,
        connect_timeout=15.0,
        **extra,  # type: ignore[arg-type]
    )


def test_the_jump_host_shows_what_an_outsider_sees(mail_network: MailNetwork) -> None:
    lab = mail_network
    postfix = lab.start_postfix(TRUSTS_CONTROLLER_LAN)
    jump_sshd = lab.start_sshd(lab.network.jump, netlab.JUMP, "jump-sshd")
    target = f"{netlab.MAIL}:25"

    assert verdict(target) == "open"  # from the trusted controller: misleading
    known = known_hosts(lab, jump_sshd.known_hosts_line())
    with SshJump(parse_vantage(JUMP_SPEC), settings(lab, known)) as jump:
        assert jump.accepted_host_key is None
        assert jump.host_key is not None
        assert jump.host_key.endswith(fingerprint(jump_sshd.host_key.with_suffix(".pub")))
        found, reason = verdict_via(jump, target)
        assert found == "closed", reason  # Debian's defer_unauth_destination, for outsiders
        with jump.forward(netlab.MAIL, 25) as forward:
            assert rcpt_code(forward.host, forward.port, f"postmaster@{INBOUND_DOMAIN}") == 250
            assert rcpt_code(forward.host, forward.port, "relaytest@example.com") == 454
    log = postfix.maillog_text()
    assert f"connect from unknown[{netlab.JUMP_INSIDE}]" in log
    assert f"connect from unknown[{netlab.CONTROLLER}]" in log


def test_an_unknown_host_key_is_refused_unless_explicitly_accepted(
    mail_network: MailNetwork,
) -> None:
    lab = mail_network
    jump_sshd = lab.start_sshd(lab.network.jump, netlab.JUMP, "jump-sshd")
    expected = fingerprint(jump_sshd.host_key.with_suffix(".pub"))
    empty = known_hosts(lab)

    with pytest.raises(HostKeyUnknown) as caught:
        SshJump(parse_vantage(JUMP_SPEC), settings(lab, empty)).connect()
    message = str(caught.value)
    assert f"host key of {JUMP_SPEC} is unknown" in message
    assert expected in message and str(empty) in message
    assert "BEGIN" not in message

    with SshJump(
        parse_vantage(JUMP_SPEC), settings(lab, empty, accept_unknown_host_key=True)
    ) as jump:
        assert jump.accepted_host_key == f"ssh-ed25519 {expected}"
        with jump.forward(netlab.JUMP, netlab.SSH_PORT) as forward:  # a channel works
            banner = netlab.wait_for_banner(forward.host, forward.port, b"SSH-2.0-")
            assert banner.startswith(b"SSH-2.0-OpenSSH")
    assert empty.read_text() == ""  # accepting for one run never writes known_hosts


def test_a_host_key_mismatch_is_refused(mail_network: MailNetwork) -> None:
    lab = mail_network
    jump_sshd = lab.start_sshd(lab.network.jump, netlab.JUMP, "jump-sshd")
    impostor = netlab.make_key(lab.work / "other_host_key", "someone-else")
    known = known_hosts(lab, jump_sshd.known_hosts_line(impostor))

    for accept in (False, True):  # accepting unknown keys never accepts a changed one
        with pytest.raises(HostKeyMismatch) as caught:
            SshJump(
                parse_vantage(JUMP_SPEC), settings(lab, known, accept_unknown_host_key=accept)
            ).connect()
        message = str(caught.value)
        assert "does NOT match known_hosts" in message
        assert fingerprint(jump_sshd.host_key.with_suffix(".pub")) in message
        assert fingerprint(impostor.with_suffix(".pub")) in message
        assert f"ssh-keygen -R '[{netlab.JUMP}]:{netlab.SSH_PORT}'" in message


def test_a_key_the_jump_host_does_not_know_is_refused(mail_network: MailNetwork) -> None:
    lab = mail_network
    jump_sshd = lab.start_sshd(lab.network.jump, netlab.JUMP, "jump-sshd")
    stranger = netlab.make_key(lab.work / "stranger_key")
    known = known_hosts(lab, jump_sshd.known_hosts_line())
    wrong = SshSettings(known_hosts=(known,), key_file=stranger, use_agent=False)
    with pytest.raises(SshAuthFailed) as caught:
        SshJump(parse_vantage(JUMP_SPEC), wrong).connect()
    assert f"authentication as root on {JUMP_SPEC} failed" in str(caught.value)
    assert str(stranger) in str(caught.value)


def test_an_unreachable_jump_host_is_a_clear_error(mail_network: MailNetwork) -> None:
    lab = mail_network
    known = known_hosts(lab)
    with pytest.raises(SshConnectFailed, match="cannot reach jump host"):
        SshJump(parse_vantage(f"ssh://root@{netlab.JUMP}:2299"), settings(lab, known)).connect()


def test_channel_failures_make_the_probe_inconclusive_with_the_reason(
    mail_network: MailNetwork,
) -> None:
    lab = mail_network
    lab.start_postfix(TRUSTS_CONTROLLER_LAN)
    open_jump = lab.start_sshd(lab.network.jump, netlab.JUMP, "jump-sshd")
    strict_jump = lab.start_sshd(
        lab.network.jump,
        netlab.JUMP,
        "strict-jump-sshd",
        port=2223,
        extra_config=f"PermitOpen {netlab.MAIL}:25\n",
    )
    known = known_hosts(lab, open_jump.known_hosts_line(), strict_jump.known_hosts_line())

    with SshJump(parse_vantage(JUMP_SPEC), settings(lab, known)) as jump:
        found, reason = verdict_via(jump, f"{netlab.MAIL}:2525")  # nothing listens there
    assert found == "inconclusive"
    assert "SSH_OPEN_CONNECT_FAILED" in reason and f"{netlab.MAIL}:2525" in reason

    strict = parse_vantage(f"ssh://root@{netlab.JUMP}:2223")
    with SshJump(strict, settings(lab, known)) as jump:
        found, reason = verdict_via(jump, f"{netlab.MAIL}:{netlab.SSH_PORT}")
        assert found == "inconclusive"
        assert "SSH_OPEN_ADMINISTRATIVELY_PROHIBITED" in reason
        allowed, why = verdict_via(jump, f"{netlab.MAIL}:25")  # PermitOpen lets this through
        assert allowed == "closed", why


def test_probe_through_a_vantage_labels_results_and_reports_an_unusable_one(
    mail_network: MailNetwork,
) -> None:
    lab = mail_network
    lab.start_postfix(TRUSTS_CONTROLLER_LAN)
    jump_sshd = lab.start_sshd(lab.network.jump, netlab.JUMP, "jump-sshd")
    vantage = parse_vantage(JUMP_SPEC)
    options = ProbeOptions(command_timeout=10.0)
    targets = [f"{netlab.MAIL}:25", f"{netlab.MAIL}:2525"]

    good = known_hosts(lab, jump_sshd.known_hosts_line())
    results = probe_through(vantage, targets, options, settings(lab, good))
    assert [r.verdict.value for r in results] == ["closed", "inconclusive"]
    assert all(r.vantage == JUMP_SPEC for r in results)
    assert results[0].to_dict()["vantage"] == JUMP_SPEC

    unknown = lab.work / "empty_known_hosts"
    unknown.write_text("")
    results = probe_through(vantage, targets, options, settings(lab, unknown))
    assert [r.verdict.value for r in results] == ["inconclusive", "inconclusive"]
    assert all(f"vantage {JUMP_SPEC} unusable: host key" in r.reason for r in results)
