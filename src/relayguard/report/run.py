"""Run metadata room: run ids, timestamps, and who/what ran relayguard.

`new_run_id` and `utc_timestamp` are pure given their inputs; `run_metadata` is the edge
that asks the system for the user name and the Ansible version.
"""

from __future__ import annotations

import getpass
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from relayguard import __version__
from relayguard.vocabulary import RunMode

RUN_ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-z]{4,16}$")
MODES = tuple(m.value for m in RunMode)


def utc_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 UTC timestamp with second precision, e.g. 2025-03-01T12:00:05Z."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(started: datetime | None = None, suffix: str | None = None) -> str:
    """Sortable run id: UTC start time, then a short random suffix (20250301T120005Z-3f9a0c)."""
    moment = (started or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{suffix or secrets.token_hex(3)}"


def ansible_version() -> str | None:
    """ansible-core's version when it is importable here, else None."""
    try:
        from ansible.release import __version__ as version
    except ImportError:
        return None
    return str(version)


def run_metadata(
    mode: str,
    *,
    started: datetime,
    finished: datetime,
    run_id: str | None = None,
    inventory: Iterable[str] = (),
    probe_options: Mapping[str, Any] | None = None,
    user: str | None = None,
    ansible: str | None = None,
    check_mode: bool = False,
) -> dict[str, Any]:
    """The report's `run` object, filling in versions and the user from this machine."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return {
        "run_id": run_id or new_run_id(started),
        "started": utc_timestamp(started),
        "finished": utc_timestamp(finished),
        "mode": mode,
        "check_mode": check_mode,
        "inventory": list(inventory),
        "relayguard_version": __version__,
        "ansible_version": ansible if ansible is not None else ansible_version(),
        "user": user if user is not None else getpass.getuser(),
        "probe_options": dict(probe_options or {}),
    }
