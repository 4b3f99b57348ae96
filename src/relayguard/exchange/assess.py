"""Assessment of Exchange hosts: facts collected, then judged — one call for the CLI and module.

Joins the collection room (`facts`) and the analysers (`analysis`) for a batch of hosts and
shapes the result every caller prints: `{"host", "ok", "error", "facts", "exposure",
"patch"}` per host. A host that cannot be read is reported with its error (host, step,
cause), never a traceback, and the others are still assessed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from relayguard.exchange.analysis import (
    PatchState,
    PatchStatus,
    RelayExposure,
    patch_status,
    relay_exposure,
)
from relayguard.exchange.capture import CaptureError, documents_from_capture, load_capture
from relayguard.exchange.current import PayloadRunner, held_session
from relayguard.exchange.facts import (
    Collected,
    ExchangeFacts,
    FactsError,
    collect_documents,
    collect_facts,
    facts_from_documents,
)
from relayguard.exchange.patch_level import PatchPolicy
from relayguard.exchange.transport import TransportError, WinRMClient, WinRMOptions
from relayguard.vocabulary import Verdict

FACTS_DOCUMENT_SCHEMA = "relayguard.exchange-facts/1"  # the `relayguard facts --json` document

EXIT_OK = 0
EXIT_OPEN = 2
EXIT_INCONCLUSIVE = 3


@dataclass(frozen=True)
class HostAssessment:
    host: str
    facts: ExchangeFacts | None
    exposure: RelayExposure | None
    patch: PatchStatus | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.error is None,
            "error": self.error,
            "facts": None if self.facts is None else self.facts.to_dict(),
            "exposure": None if self.exposure is None else self.exposure.to_dict(),
            "patch": None if self.patch is None else self.patch.to_dict(),
        }


def judge(
    facts: ExchangeFacts,
    *,
    policy: PatchPolicy = PatchPolicy.LATEST,
    as_of: date | None = None,
) -> HostAssessment:
    """The pure half: analysis of collected facts (`as_of`: the day lifecycles are judged)."""
    patch = patch_status(facts, policy=policy, as_of=as_of)
    return HostAssessment(facts.host, facts, relay_exposure(facts), patch)


def assess(
    options: WinRMOptions,
    *,
    as_of: date | None = None,
    policy: PatchPolicy = PatchPolicy.LATEST,
    client_factory: Callable[[WinRMOptions], WinRMClient] = WinRMClient,
) -> HostAssessment:
    """Collect one host's facts over WinRM and judge them; errors become the `error` field."""
    day = as_of or date.today()
    try:
        client = client_factory(options)
        with held_session(client):  # the reads share one shell
            facts = collect_facts(client, as_of=day)
    except (TransportError, FactsError) as exc:
        return HostAssessment(options.host, None, None, None, error=str(exc))
    return judge(facts, policy=policy, as_of=day)


def assess_runner(
    runner: PayloadRunner,
    host: str,
    *,
    as_of: date | None = None,
    policy: PatchPolicy = PatchPolicy.LATEST,
) -> HostAssessment:
    """`assess` over any channel's runner (a management host's, for Exchange 5.5)."""
    return assess_collected(runner, host, as_of=as_of, policy=policy)[0]


def assess_collected(
    runner: PayloadRunner,
    host: str,
    *,
    as_of: date | None = None,
    policy: PatchPolicy = PatchPolicy.LATEST,
) -> tuple[HostAssessment, Collected | None]:
    """`assess_runner`, keeping the documents read (None when the host could not be read)."""
    day = as_of or date.today()
    try:
        with held_session(runner):
            collected = collect_documents(runner, as_of=day)
    except (TransportError, FactsError) as exc:
        return HostAssessment(host, None, None, None, error=str(exc)), None
    return judge(collected.facts, policy=policy, as_of=day), collected


def assess_capture(
    directory: str | Path,
    *,
    as_of: date | None = None,
    policy: PatchPolicy = PatchPolicy.LATEST,
) -> HostAssessment:
    """Judge an offline capture (capture.py) with the same rules as a live server; a capture
    that cannot be read is the host's error, naming the file."""
    label = str(directory)
    day = as_of or date.today()
    try:
        detect, config, notes = documents_from_capture(load_capture(directory))
        facts = facts_from_documents(label, detect, config, as_of=day)
    except (CaptureError, FactsError) as exc:
        return HostAssessment(label, None, None, None, error=str(exc))
    return judge(dataclasses.replace(facts, notes=(*facts.notes, *notes)), policy=policy, as_of=day)


def document(assessments: Sequence[HostAssessment]) -> dict[str, Any]:
    return {"schema": FACTS_DOCUMENT_SCHEMA, "hosts": [a.to_dict() for a in assessments]}


def exit_status(assessments: Sequence[HostAssessment]) -> int:
    """2 when any host relays or misses its fix, 3 when any is unreadable or unknown, else 0."""
    if any(
        a.exposure is not None and a.exposure.verdict is Verdict.OPEN for a in assessments
    ) or any(a.patch is not None and a.patch.state is PatchState.MISSING for a in assessments):
        return EXIT_OPEN
    if any(
        a.error is not None
        or (a.exposure is not None and a.exposure.verdict is Verdict.INCONCLUSIVE)
        or (a.patch is not None and a.patch.state is PatchState.UNKNOWN)
        for a in assessments
    ):
        return EXIT_INCONCLUSIVE
    return EXIT_OK
