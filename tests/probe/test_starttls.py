"""Opportunistic STARTTLS: used when offered, certificate recorded, never required."""

from __future__ import annotations

import ssl
from pathlib import Path

from support.scripted_smtp import Script, ScriptedServer, Session, relay_policy, serve

from relayguard.commands.probe import render_table
from relayguard.lab.ca import LabCA
from relayguard.probe import ProbeOptions, probe_targets
from relayguard.vocabulary import Verdict


def tls_policy(tls_on: list[bool], refuse: bool = False) -> object:
    base = relay_policy(False)

    def handle(session: Session, line: str) -> bytes | None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO" and not session.data.get("tls"):
            return b"250-mx.test.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
        if verb == "STARTTLS":
            if refuse:
                return b"454 4.7.0 TLS not available due to local problem\r\n"
            session.data["tls"] = True
            tls_on.append(True)
            return b"220 2.0.0 Ready to start TLS\r\n"
        return base(session, line)

    return handle


def server_context(tmp_path: Path) -> ssl.SSLContext:
    ca = LabCA.create(tmp_path / "ca")
    cert = ca.issue_server_certificate(tmp_path / "srv", "mx.test.example", ["127.0.2.51"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_path, cert.key_path)
    return context


def test_starttls_used_and_untrusted_certificate_recorded(tmp_path: Path) -> None:
    upgraded: list[bool] = []
    script = Script(tls_policy(upgraded), tls=server_context(tmp_path))  # type: ignore[arg-type]
    with serve(script, host="127.0.2.51") as srv:
        (result,) = probe_targets([srv.target], ProbeOptions(command_timeout=3))
        commands = list(srv.stats.commands)
    assert result.verdict is Verdict.CLOSED, result.reason
    assert upgraded  # the dialogue went on inside TLS
    assert result.tls.offered and result.tls.established
    assert result.tls.validated is False  # a lab CA is not in the system store
    assert result.tls.subject is not None and "mx.test.example" in result.tls.subject
    assert any(c.upper().startswith("RCPT") for c in commands)


def test_starttls_refused_goes_on_in_plaintext(tmp_path: Path) -> None:
    script = Script(tls_policy([], refuse=True))  # type: ignore[arg-type]
    with serve(script, host="127.0.2.52") as srv:
        (result,) = probe_targets([srv.target], ProbeOptions(command_timeout=3))
    assert result.verdict is Verdict.CLOSED, result.reason
    assert result.tls.offered and not result.tls.established
    assert result.tls.error is not None and "454" in result.tls.error


def test_broken_handshake_goes_on_in_plaintext() -> None:
    broken = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no certificate: every handshake fails
    script = Script(tls_policy([]), tls=broken)  # type: ignore[arg-type]
    with serve(script, host="127.0.2.53") as srv:
        (result,) = probe_targets([srv.target], ProbeOptions(command_timeout=3))
    assert result.verdict is Verdict.CLOSED, result.reason
    assert not result.tls.established
    assert result.tls.error is not None


def tls_demanding_policy(advertise: bool) -> object:
    """An open relay that answers MAIL in plaintext "530 5.7.0 Must issue a STARTTLS command
    first" (RFC 3207 §4), as Postfix with smtpd_tls_security_level = encrypt does."""
    base = relay_policy(True)

    def handle(session: Session, line: str) -> bytes | None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO" and not session.data.get("tls"):
            offer = b"250-STARTTLS\r\n" if advertise else b""
            return b"250-mx.test.example\r\n" + offer + b"250 8BITMIME\r\n"
        if verb == "STARTTLS":
            session.data["tls"] = True
            return b"220 2.0.0 Ready to start TLS\r\n"
        if verb == "MAIL" and not session.data.get("tls"):
            return b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        return base(session, line)

    return handle


def test_a_starttls_demand_upgrades_even_without_starttls(tmp_path: Path) -> None:
    script = Script(tls_demanding_policy(True), tls=server_context(tmp_path))  # type: ignore[arg-type]
    with serve(script, host="127.0.2.53") as srv:
        (result,) = probe_targets([srv.target], ProbeOptions(command_timeout=3, starttls=False))
    # not "closed" by a 530: the catalog ran under TLS and found the relay
    assert result.verdict is Verdict.OPEN, result.reason
    assert result.tls.established


def test_a_starttls_demand_that_cannot_be_met_is_inconclusive() -> None:
    script = Script(tls_demanding_policy(False))  # type: ignore[arg-type]
    with serve(script, host="127.0.2.54") as srv:
        (result,) = probe_targets([srv.target], ProbeOptions(command_timeout=3))
    assert result.verdict is Verdict.INCONCLUSIVE, result.reason
    assert "STARTTLS" in result.reason


def test_an_ipv6_target_is_probed_and_shown_in_brackets() -> None:
    server = ScriptedServer(Script(relay_policy(True)), "::1")
    with server:
        target = f"[::1]:{server.port}"
        (result,) = probe_targets([target], ProbeOptions(command_timeout=3))
    assert result.target == target and result.address == "::1"
    assert result.verdict is Verdict.OPEN, result.reason
    assert result.transcript[0] == ("*", f"connection 1 to {target}")
    assert render_table([result], colour=False, verbose=False).splitlines()[1].startswith(target)
