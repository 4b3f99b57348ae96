"""Probe records and the versioned JSON document (`relayguard.probe/1`) built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from relayguard.probe.judge import Finding, TestRecord
from relayguard.probe.mx import DomainMail
from relayguard.probe.options import ProbeOptions
from relayguard.vocabulary import PROBE_SCHEMA, Verdict


@dataclass(frozen=True)
class TlsInfo:
    offered: bool = False
    established: bool = False
    validated: bool | None = None
    subject: str | None = None
    error: str | None = None
    implicit: bool = False  # TLS from the first byte (port 465), not STARTTLS

    def to_dict(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "implicit": self.implicit,
            "established": self.established,
            "validated": self.validated,
            "subject": self.subject,
            "error": self.error,
        }


@dataclass(frozen=True)
class HostResult:
    target: str
    address: str | None
    port: int
    verdict: Verdict
    reason: str
    vantage: str
    banner: str = ""
    srvname: str | None = None
    local_domain: str | None = None
    esmtp: bool | None = None
    tls: TlsInfo = field(default_factory=TlsInfo)
    tests: tuple[TestRecord, ...] = ()
    rfc2505: tuple[Finding, ...] = ()
    # Sender-authentication findings (own-domain sender from an untrusted client): beside the
    # verdict, never folded into it.
    sender: tuple[Finding, ...] = ()
    transcript: tuple[tuple[str, str], ...] = ()
    connections: int = 0
    duration_s: float = 0.0
    # Delivery confirmation (issue 11, probe.confirm): relayed | bounced | unconfirmed.
    confirmation: str | None = None
    confirmation_evidence: dict[str, Any] | None = None
    # Probed as a mail exchanger of `domain` (--domain): the MX name; None for a plain target.
    domain: str | None = None
    mx: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "address": self.address,
            "port": self.port,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "vantage": self.vantage,
            "banner": self.banner,
            "srvname": self.srvname,
            "local_domain": self.local_domain,
            "esmtp": self.esmtp,
            "tls": self.tls.to_dict(),
            "tests": [
                {
                    "id": t.id,
                    "nmap": t.nmap,
                    "mail_from": t.mail_from,
                    "rcpt_to": t.rcpt_to,
                    "code": t.code,
                    "reply": t.reply,
                    "outcome": t.outcome.value,
                    "exercises": t.exercises.value,
                    "source": t.source,
                    "attempts": t.attempts,
                    "error": t.error,
                    "control": t.control,
                    "decided_at": t.decided_at,
                }
                for t in self.tests
            ],
            "rfc2505": [_finding(f) for f in self.rfc2505],
            "sender": [_finding(f) for f in self.sender],
            "transcript": [list(entry) for entry in self.transcript],
            "connections": self.connections,
            "duration_s": round(self.duration_s, 3),
            "confirmation": self.confirmation,
            "confirmation_evidence": self.confirmation_evidence,
            "domain": self.domain,
            "mx": self.mx,
        }


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "section": f.section,
        "title": f.title,
        "result": f.result.value,
        "detail": f.detail,
    }


def probe_document(
    results: Sequence[HostResult],
    options: ProbeOptions,
    domains: Sequence[DomainMail] = (),
) -> dict[str, Any]:
    """The one JSON document every renderer starts from (schema `relayguard.probe/1`).

    With `--domain`, `domains` lists each domain's exchangers and the targets probed for it
    (its hosts carry `domain` and `mx`); `hosts` stays the flat list every reader knows."""
    document: dict[str, Any] = {
        "schema": PROBE_SCHEMA,
        "options": options.to_dict(),
        "hosts": [r.to_dict() for r in results],
    }
    if domains:
        document["domains"] = [
            {**d.to_dict(), "targets": [r.target for r in results if r.domain == d.domain]}
            for d in domains
        ]
    return document
