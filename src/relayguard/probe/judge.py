"""Pure decisions of the probe: what a reply means, what a host's replies add up to.

No I/O here: every function takes records and returns records, and is tested without a
network. The rules cite docs/sources.md#nmap-smtp-open-relay (nmap's reading of replies) and
RFC 2505.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from relayguard.probe.catalog import ROUTING_FORMS, CheckKind, ConformanceCheck, Exercises
from relayguard.probe.reply import Reply
from relayguard.vocabulary import FindingResult, Outcome, Verdict

# Outcomes that answer a relay test without relaying (ACCEPTED: see `apply_control`).
JUDGED = frozenset({Outcome.REFUSED, Outcome.DEFERRED, Outcome.AUTH_REQUIRED, Outcome.ACCEPTED})


_TLS_WORD = re.compile(r"\b(?:START)?TLS\b", re.IGNORECASE)


def tls_required(reply: Reply) -> bool:
    """530 (or 5.7.0) naming STARTTLS/TLS: "530 5.7.0 Must issue a STARTTLS command first"
    (RFC 3207 §4) asks for encryption first; it says nothing yet about relaying."""
    return needs_auth(reply) and bool(_TLS_WORD.search(reply.text))


def needs_auth(reply: Reply) -> bool:
    """530, or an enhanced 5.7.0, means 'authenticate first' (RFC 4954 §6; nmap stops on 530)."""
    return reply.code == 530 or (reply.permanent and reply.enhanced == "5.7.0")


def classify_reply(reply: Reply) -> Outcome:
    if reply.positive:
        return Outcome.RELAYED
    if tls_required(reply):
        return Outcome.ERROR  # not an answer to the relay question (the runner upgrades first)
    if needs_auth(reply):
        return Outcome.AUTH_REQUIRED
    if reply.transient:
        return Outcome.DEFERRED
    if reply.permanent:
        return Outcome.REFUSED
    return Outcome.ERROR  # 1xx/3xx are not answers to MAIL or RCPT


def classify_envelope(mail: Reply, rcpt: Reply | None) -> Outcome:
    """The outcome of one relay test. RCPT counts only when MAIL was accepted, as in nmap;
    any 2xx to RCPT of a foreign recipient is relaying (nmap counts 250 and 251)."""
    if not mail.positive:
        outcome = classify_reply(mail)
        return Outcome.ERROR if outcome is Outcome.RELAYED else outcome
    if rcpt is None:
        return Outcome.ERROR
    return classify_reply(rcpt)


@dataclass(frozen=True)
class TestRecord:
    """One relay test as run on one host."""

    id: str
    nmap: int | None
    exercises: Exercises
    source: str
    mail_from: str
    rcpt_to: str
    outcome: Outcome
    code: int | None = None
    reply: str = ""
    attempts: int = 1
    error: str = ""
    control: str = ""  # the control envelope's evidence, for routed forms at a local domain
    # "mail" when the MAIL FROM reply decided the test (the sender was refused, so the
    # recipient form was never tried); "rcpt" otherwise. See `decided_at`.
    decided_at: str = "rcpt"


def decided_at(mail: Reply) -> str:
    """Which reply decides a relay test: RCPT only counts once MAIL was accepted (as in nmap),
    so a refused MAIL FROM decides it without the recipient form being tried. Exim refuses
    nmap's sender <antispam@[IP]> with 501 when domain literals are off (allow_domain_literals
    is false by default, docs/sources.md#exim-domain-literals), which takes nmap's tests 4-16
    with it."""
    return "rcpt" if mail.positive else "mail"


def apply_control(record: TestRecord, control_rcpt: str, control: Reply | None) -> TestRecord:
    """Judge a routed form addressed to one of the server's own domains against its control.

    `user%foreign@LOCAL` answered 2xx shows relaying only if the server refuses an unknown
    mailbox at LOCAL; a server that accepts any mailbox there (Exchange 5.5's IMS checks no
    recipient at RCPT time) would accept the form and bounce it later just the same, so the
    2xx is `accepted`: neither relay nor refusal is shown (RFC 2505 §1.5/1.6 still faults it).
    """
    if record.outcome is not Outcome.RELAYED or control is None:
        return record
    evidence = f"control RCPT TO:{control_rcpt} answered {control.first_line}"
    if not control.positive:
        return replace(record, control=evidence)
    return replace(record, outcome=Outcome.ACCEPTED, control=evidence)


@dataclass(frozen=True)
class CheckRecord:
    """One RFC 2505 conformance check as run on one host."""

    check: ConformanceCheck
    sent: tuple[str, ...]
    mail: Reply | None = None
    reply: Reply | None = None  # RCPT reply for envelopes, the command's reply otherwise
    error: str = ""


@dataclass(frozen=True)
class Finding:
    id: str
    section: str
    title: str
    result: FindingResult
    detail: str


def verdict(records: Sequence[TestRecord], host_failure: str | None) -> tuple[Verdict, str]:
    """open if any relay test relayed; closed if every one was refused, deferred or met an
    auth demand; inconclusive otherwise, with the reason."""
    relayed = [r.id for r in records if r.outcome is Outcome.RELAYED]
    if relayed:
        return Verdict.OPEN, f"{len(relayed)}/{len(records)} relay tests relayed: " + ", ".join(
            relayed
        )
    if host_failure is not None:
        return Verdict.INCONCLUSIVE, host_failure
    if records and all(r.outcome in JUDGED for r in records):
        counts = {o: sum(1 for r in records if r.outcome is o) for o in JUDGED}
        parts = [f"{n} {o.value}" for o, n in sorted(counts.items()) if n]
        at_mail = sum(1 for r in records if r.decided_at == "mail")
        mail = f" ({at_mail} at MAIL FROM, the recipient form not tried)" if at_mail else ""
        return (
            Verdict.CLOSED,
            f"all {len(records)} relay tests answered: " + ", ".join(parts) + mail,
        )
    unjudged = [r for r in records if r.outcome not in JUDGED]
    if not unjudged:
        return Verdict.INCONCLUSIVE, "no relay test was run"
    first = unjudged[0]
    answer = f"{first.code} {first.reply}" if first.code is not None else first.reply
    why = first.error or answer or first.outcome.value
    return (
        Verdict.INCONCLUSIVE,
        f"{len(unjudged)}/{len(records)} relay tests not answered ({first.id}: {why})",
    )


def routing_forms_finding(routed: Sequence[TestRecord]) -> Finding:
    """RFC 2505 §2.1 over the routing-form tests. Only a test whose RCPT was answered says
    anything about the form: when the server refused their sender at MAIL FROM, the forms were
    never tried and the finding is not applicable rather than a pass."""
    relayed = [r.id for r in routed if r.outcome is Outcome.RELAYED]
    at_mail = [r for r in routed if r.decided_at == "mail"]
    if relayed:
        result, detail = FindingResult.FAIL, "relayed through routing forms: " + ", ".join(relayed)
    elif at_mail and len(at_mail) == len(routed):
        first = at_mail[0]
        result, detail = (
            FindingResult.NOT_APPLICABLE,
            f"none of the {len(routed)} routing-form tests reached RCPT: the server refused "
            f"their sender at MAIL FROM ({first.mail_from}: {first.code} {first.reply})",
        )
    else:
        untried = f" ({len(at_mail)} at MAIL FROM, the form not tried)" if at_mail else ""
        result, detail = (
            FindingResult.PASS,
            f"all {len(routed)} routing-form tests refused{untried}",
        )
    return Finding(
        "routing-forms-stripped",
        "2.1",
        "Encapsulated and source-routed addresses (%, !, @a:, IMCEA) are not relayed",
        result,
        detail,
    )


def _envelope_finding(record: CheckRecord, local_domain_given: bool) -> tuple[FindingResult, str]:
    if record.mail is None:
        return FindingResult.ERROR, record.error or "not run"
    if not record.mail.positive:
        return FindingResult.FAIL, f"MAIL refused: {record.mail.first_line}"
    if record.reply is None:
        return FindingResult.ERROR, record.error or "RCPT not answered"
    if record.reply.positive:
        return FindingResult.PASS, f"accepted: {record.reply.first_line}"
    if not local_domain_given:
        # Without --local-domain the local domain is a guess (SRVNAME); a refusal may only
        # mean the guess is not a local domain.
        return (
            FindingResult.NOT_APPLICABLE,
            f"refused ({record.reply.first_line}); the local domain was guessed from the "
            "banner: give --local-domain to judge this",
        )
    return FindingResult.FAIL, f"refused: {record.reply.first_line}"


def _command_finding(record: CheckRecord) -> tuple[FindingResult, str]:
    reply = record.reply
    if reply is None:
        return FindingResult.ERROR, record.error or "not answered"
    # 250/251 disclose a mailbox or honour ETRN for anyone; 252 "cannot VRFY" discloses
    # nothing (RFC 5321 §3.5.3); any refusal shows the command is controlled.
    if reply.code in (250, 251) or (reply.positive and record.check.id == "etrn-controlled"):
        return FindingResult.FAIL, f"answered {reply.first_line}"
    return FindingResult.PASS, f"answered {reply.first_line}"


def findings(
    records: Sequence[TestRecord],
    checks: Sequence[CheckRecord],
    local_domain_given: bool,
) -> list[Finding]:
    """RFC 2505 findings, reported beside the verdict and never folded into it."""
    out: list[Finding] = []
    judged = [r for r in records if r.outcome is not Outcome.SKIPPED]
    if judged:
        accepted = [r.id for r in judged if r.outcome in (Outcome.RELAYED, Outcome.ACCEPTED)]
        out.append(
            Finding(
                "refused-in-dialogue",
                "1.5, 1.6",
                "Relaying is refused inside the SMTP dialogue (at RCPT), not accepted and "
                "bounced later",
                FindingResult.FAIL if accepted else FindingResult.PASS,
                (
                    "foreign recipients accepted at RCPT time (relays, or bounces later): "
                    + ", ".join(accepted)
                )
                if accepted
                else "every foreign recipient was refused in the dialogue",
            )
        )
        routed = [r for r in judged if r.exercises in ROUTING_FORMS]
        if routed:
            out.append(routing_forms_finding(routed))
        sender = [r for r in judged if r.exercises is Exercises.SENDER_TRUST]
        sender_open = [r.id for r in sender if r.outcome is Outcome.RELAYED]
        plain_open = any(
            r.outcome is Outcome.RELAYED for r in judged if r.exercises is Exercises.PLAIN
        )
        # When plain relaying is open, sender forms prove nothing about sender trust.
        if sender and not plain_open:
            out.append(
                Finding(
                    "relay-not-by-sender",
                    "2.1",
                    "The relay decision does not trust the MAIL FROM domain",
                    FindingResult.FAIL if sender_open else FindingResult.PASS,
                    ("relayed for chosen senders: " + ", ".join(sender_open))
                    if sender_open
                    else f"no sender form ({len(sender)} tried) opened the relay",
                )
            )
    for record in checks:
        if record.check.kind is CheckKind.ENVELOPE:
            result, detail = _envelope_finding(record, local_domain_given)
        else:
            result, detail = _command_finding(record)
        out.append(
            Finding(record.check.id, record.check.section, record.check.title, result, detail)
        )
    return out


# The RFC 2505 check whose envelope (MAIL FROM and RCPT TO a local mailbox, both in the
# server's own domain) the own-domain sender finding reads, with the opposite expectation.
OWN_DOMAIN_CHECK = "local-sender-accepted"


def own_domain_sender(record: CheckRecord | None, local_domain_given: bool) -> Finding | None:
    """Whether an untrusted client may send as the server's own domain to a local mailbox.

    Not a relay verdict: a sender-authentication finding (docs/sources.md#own-domain-sender).
    Pass when the envelope is refused (at MAIL or RCPT), fail when it is accepted. RFC 2505
    §2 (6) recommends the opposite (accept such senders), which is why it stays a finding."""
    if record is None:
        return None
    title = "Mail claiming the server's own domain is refused from an untrusted client"
    section = "sender authentication"
    claimed = record.sent[0].removeprefix("MAIL FROM:") if record.sent else "own domain"

    def finding(result: FindingResult, detail: str) -> Finding:
        return Finding("own-domain-sender-refused", section, title, result, detail)

    if record.mail is None:
        return finding(FindingResult.ERROR, record.error or "not run")
    if not record.mail.positive:
        return finding(FindingResult.PASS, f"MAIL refused: {record.mail.first_line}")
    if record.reply is None:
        return finding(FindingResult.ERROR, record.error or "RCPT not answered")
    if record.reply.positive:
        return finding(
            FindingResult.FAIL,
            f"anyone may send as {claimed} to a local mailbox: {record.reply.first_line}",
        )
    if not local_domain_given:
        return finding(
            FindingResult.NOT_APPLICABLE,
            f"refused ({record.reply.first_line}); the local domain was guessed from the "
            "banner: give --local-domain to judge this",
        )
    return finding(FindingResult.PASS, f"refused: {record.reply.first_line}")
