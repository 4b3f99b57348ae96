"""Reports from a probe alone: statuses, platforms, and a real probe run on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from relayguard.report import exit_status, report_from_probe, run_metadata, validate_probe
from relayguard.report.from_probe import platform_from_banner, status_from_probe
from relayguard.vocabulary import HostStatus, Platform
from report.samples import ex55_banner, probe_host, relay_tests


def _probe_doc(*hosts: dict[str, Any]) -> dict[str, Any]:
    return {"schema": "relayguard.probe/1", "options": {"port": 25}, "hosts": list(hosts)}


def _meta() -> dict[str, Any]:
    t = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    return run_metadata("probe", started=t, finished=t, user="auditor", ansible=None)


OPEN = probe_host(
    "192.0.2.1", "192.0.2.1", "220 a ESMTP Postfix", "a", relay_tests("192.0.2.1", "a", {"nmap-02"})
)
CLOSED = probe_host(
    "192.0.2.2",
    "192.0.2.2",
    ex55_banner("b", "5.5.2653.13"),
    "b",
    relay_tests("192.0.2.2", "b", set()),
)
DARK = probe_host(
    "192.0.2.3",
    "192.0.2.3",
    "",
    "",
    relay_tests("192.0.2.3", "", set(), outcome_all="skipped"),
    verdict="inconclusive",
    reason="connection refused",
)
MUTE = probe_host(
    "192.0.2.4",
    "192.0.2.4",
    "220 c ESMTP",
    "c",
    relay_tests("192.0.2.4", "c", set(), outcome_all="error"),
    verdict="inconclusive",
    reason="16/16 relay tests not answered",
)
BOUNCER = probe_host(
    "192.0.2.5",
    "192.0.2.5",
    "220 d ESMTP",
    "d",
    relay_tests("192.0.2.5", "d", set()),
    confirmation="bounced",
    evidence={"received": [{"kind": "ndr"}]},
)


@pytest.mark.parametrize(
    ("probe", "status"),
    [
        (OPEN, HostStatus.AUDIT_FAILED),
        (CLOSED, HostStatus.COMPLIANT),
        (DARK, HostStatus.UNREACHABLE),
        (MUTE, HostStatus.FAILED),
        (BOUNCER, HostStatus.AUDIT_FAILED),
    ],
)
def test_status_from_probe(probe: dict[str, Any], status: HostStatus):
    assert status_from_probe(probe) is status


@pytest.mark.parametrize(
    ("banner", "platform"),
    [
        ("220 mx.example ESMTP Postfix (Debian/GNU)", Platform.POSTFIX),
        (ex55_banner("mx", "5.5.2448.0"), Platform.EXCHANGE55),
        ("220 mx Microsoft ESMTP MAIL Service, Version: 15.1.2507.6 ready", Platform.EXCHANGE2016),
        ("220 mx Microsoft ESMTP MAIL Service, Version: 15.2.1748.10 ready", Platform.EXCHANGE2019),
        ("220 mx Microsoft ESMTP MAIL Service, Version: 15.2.2562.17 ready", Platform.EXCHANGESE),
        ("220 mx Microsoft ESMTP MAIL Service ready at Sat, 1 Mar 2025", Platform.UNKNOWN),
        ("", Platform.UNKNOWN),
        (None, Platform.UNKNOWN),
    ],
)
def test_platform_guess_from_banner(banner: str | None, platform: Platform):
    assert platform_from_banner(banner) is platform


def test_report_from_probe_matches_the_probe_exit_status():
    closed = report_from_probe(_probe_doc(CLOSED), _meta())
    assert closed["summary"]["exit_status"] == 0
    inconclusive = report_from_probe(_probe_doc(CLOSED, DARK, MUTE), _meta())
    assert inconclusive["summary"]["exit_status"] == 3
    doc = report_from_probe(_probe_doc(OPEN, CLOSED, DARK), _meta(), {"192.0.2.3": "exchange2013"})
    assert doc["summary"]["exit_status"] == exit_status(doc["hosts"]) == 2
    assert doc["run"]["mode"] == "probe" and doc["run"]["probe_options"] == {"port": 25}
    first, second, third = doc["hosts"]
    assert (first["platform"], second["platform"], third["platform"]) == (
        "postfix",
        "exchange55",
        "exchange2013",
    )
    assert first["before"] == OPEN and first["after"] is None and first["changes"] == []
    assert first["error"] == OPEN["reason"] and second["error"] is None
    assert third["status"] == "unreachable" and third["error"] == "connection refused"


def test_the_same_target_twice_stays_two_hosts():
    doc = report_from_probe(_probe_doc(OPEN, OPEN), _meta())
    assert [h["host"] for h in doc["hosts"]] == ["192.0.2.1", "192.0.2.1 #2"]


# ---- a real probe run (the lead's engine) against a loopback relay, reports range 127.0.80.0/24


class _ScriptedSmtp:
    """A tiny SMTP server on 127.0.80.1 that accepts every recipient (an open relay)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.80.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.stop = threading.Event()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                conn.settimeout(10)
                stream.write(b"220 relay.test ESMTP Postfix <b>hostile</b>\r\n")
                stream.flush()
                for raw in stream:
                    verb = raw.decode("ascii", "replace").strip().split(" ")[0].upper()
                    if verb == "QUIT":
                        stream.write(b"221 2.0.0 Bye\r\n")
                        stream.flush()
                        break
                    reply = {
                        "EHLO": b"250-relay.test\r\n250 8BITMIME\r\n",
                        "VRFY": b"252 2.0.0 Cannot VRFY\r\n",
                    }.get(verb, b"250 2.0.0 Ok\r\n")
                    stream.write(reply)
                    stream.flush()

    def __enter__(self) -> _ScriptedSmtp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def open_relay() -> Iterator[_ScriptedSmtp]:
    with _ScriptedSmtp() as server:
        yield server


@pytest.mark.timeout(120)
def test_real_probe_document_validates_and_reports(open_relay: _ScriptedSmtp, tmp_path: Any):
    from relayguard.probe import ProbeOptions, probe_document, probe_targets
    from relayguard.report import render_all, write_report

    options = ProbeOptions(
        source_address="127.0.80.200",
        command_timeout=10,
        host_timeout=60,
        connect_timeout=5,
        starttls=False,
    )
    results = probe_targets([f"127.0.80.1:{open_relay.port}"], options)
    probe_doc = probe_document(results, options)
    validate_probe(probe_doc)
    doc = report_from_probe(probe_doc, _meta())
    (entry,) = doc["hosts"]
    assert entry["before"]["verdict"] == "open" and entry["status"] == "audit_failed"
    assert entry["platform"] == "postfix"
    assert doc["summary"]["exit_status"] == 2
    assert "<b>hostile</b>" not in render_all(doc)["report.html"]
    assert (write_report(doc, tmp_path) / "report.html").is_file()
