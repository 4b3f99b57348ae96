"""Waivers room: documented exceptions that expire, as InSpec keeps them.

A waiver file is YAML: a list (or ``{waivers: [...]}``) of entries
``{host, finding, justification, approver, expires: YYYY-MM-DD}``. `host` and `finding`
may be shell patterns (``mx*``, ``rfc2505-*``), except that a finding the probe observed
from outside (an open relay, a relayed or bounced test message) is waived only by an entry
that names that exact finding: a pattern never silences a relay.

`parse_waivers` is pure: it returns the valid, unexpired waivers and one error per bad entry
("waiver #2 (mx1/relay-closed): expired on 2026-01-31"); a finding whose waiver is in error
counts again. `load_waivers` reads the file (the I/O edge).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FIELDS = ("host", "finding", "justification", "approver", "expires")
# Findings that fail only when the probe saw, from outside, a relay (or an accept-then-bounce):
# only a waiver naming them exactly applies (relayguard.report.controls, probe.judge).
OBSERVED_RELAY = frozenset(
    {
        "relay-closed",
        "delivery-confirmation",
        "rfc2505-refused-in-dialogue",
        "rfc2505-routing-forms-stripped",
        "rfc2505-relay-not-by-sender",
    }
)


class WaiverFileError(ValueError):
    """The waiver file cannot be read or is not a list of entries (one line, names the file)."""


@dataclass(frozen=True)
class Waiver:
    host: str
    finding: str
    justification: str
    approver: str
    expires: dt.date

    def matches(self, host: str, finding: str) -> bool:
        if not fnmatch.fnmatchcase(host, self.host):
            return False
        if finding in OBSERVED_RELAY:
            return self.finding == finding
        return fnmatch.fnmatchcase(finding, self.finding)

    def as_dict(self) -> dict[str, str]:
        return {
            "host": self.host,
            "finding": self.finding,
            "justification": self.justification,
            "approver": self.approver,
            "expires": self.expires.isoformat(),
        }


def _label(index: int, entry: object) -> str:
    if isinstance(entry, Mapping):
        return f"waiver #{index} ({entry.get('host', '?')}/{entry.get('finding', '?')})"
    return f"waiver #{index}"


def _expiry(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return None  # a time of day is not an expiry date
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value) if len(value) == 10 else None
        except ValueError:
            return None
    return None


def entry_problem(entry: object, today: dt.date) -> str | None:
    """Why one entry is not a usable waiver today (None: it is)."""
    if not isinstance(entry, Mapping):
        return "is not a mapping of host, finding, justification, approver, expires"
    missing = [f for f in FIELDS if f not in entry]
    if missing:
        return "lacks " + ", ".join(missing)
    unknown = sorted(str(k) for k in entry if k not in FIELDS)
    if unknown:
        return "has unknown field(s) " + ", ".join(unknown)
    for name in FIELDS[:4]:
        value = entry[name]
        if not isinstance(value, str) or not value.strip():
            return f"{name} must be a non-empty string"
    expires = _expiry(entry["expires"])
    if expires is None:
        return f"expires {entry['expires']!r} is not a date YYYY-MM-DD"
    if expires < today:
        return f"expired on {expires.isoformat()}"
    return None


def parse_waivers(data: Any, today: dt.date) -> tuple[list[Waiver], list[str]]:
    """The usable waivers of a parsed waiver file, and one error per entry that is not."""
    entries = data.get("waivers") if isinstance(data, Mapping) else data
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        raise WaiverFileError("a waiver file is a list of entries (or {waivers: [...]})")
    waivers: list[Waiver] = []
    errors: list[str] = []
    for index, entry in enumerate(entries, start=1):
        problem = entry_problem(entry, today)
        if problem is not None:
            errors.append(f"{_label(index, entry)}: {problem}")
            continue
        expires = _expiry(entry["expires"])
        assert expires is not None  # entry_problem checked it
        host, finding, justification, approver = (str(entry[f]).strip() for f in FIELDS[:4])
        waivers.append(Waiver(host, finding, justification, approver, expires))
    return waivers, errors


def load_waivers(path: Path | str, today: dt.date) -> tuple[list[Waiver], list[str]]:
    """Read and parse a waiver file; `WaiverFileError` when it cannot be read at all."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WaiverFileError(f"cannot read waiver file {path}: {reason}") from exc
    except yaml.YAMLError as exc:
        raise WaiverFileError(f"waiver file {path} is not YAML: {exc}") from exc
    try:
        return parse_waivers(data, today)
    except WaiverFileError as exc:
        raise WaiverFileError(f"{path}: {exc}") from exc


def waiver_for(waivers: Sequence[Waiver], host: str, finding: str) -> Waiver | None:
    """The first waiver that applies to `finding` on `host` (exact names win over patterns)."""
    exact = [w for w in waivers if w.host == host and w.finding == finding]
    return next(iter(exact), None) or next((w for w in waivers if w.matches(host, finding)), None)
