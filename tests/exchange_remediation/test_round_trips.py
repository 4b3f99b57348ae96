"""A regression guard on WinRM round trips: one Exchange 2019 host's detect and its whole
apply (relay change and security update) against a twin, counted by the twin's endpoint.

The bounds are the figures measured when packages and large scripts moved to the command's
stdin (WS-Man Send) and a task's payloads came to share one shell: before, the detect took 10
commands and 38 HTTP requests, the apply 60 commands and 276 HTTP requests. The detect is
exchange_batch's (assess, then plan): it plans from the documents assess read, so it costs what
assess alone costs (it was 4 commands and 24 HTTP requests while the plan read the host again);
the apply's relay and patch steps share one shell (51 HTTP requests while each opened its own).
A change that adds round trips fails here; one that removes some should lower the bounds. Not a
timed test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_remediation.roundtrips import SPEC, TARGET_VERSION, measure
from exchange_remediation.wirelab import WireLab, wire_lab

# (commands, HTTP requests) at most
DETECT_BOUND = (2, 12)
APPLY_BOUND = (11, 47)


@pytest.fixture(scope="module")
def lab() -> Iterator[WireLab]:
    with wire_lab(SPEC, "127.0.55.101") as running:
        yield running


def test_detect_and_apply_stay_within_their_round_trips(lab: WireLab, tmp_path: Path) -> None:
    figures = measure(lab, tmp_path)
    detect, apply = figures["detect"], figures["apply"]
    assert not detect["result"]["failed"], detect["result"]
    relay, patch = apply["result"]["relay"], apply["result"]["patch"]
    assert not relay["failed"] and relay["changed"], relay
    assert not patch["failed"] and patch["changed"], patch
    assert patch["version_after"] == TARGET_VERSION
    assert detect["Command"] <= DETECT_BOUND[0] and detect["http"] <= DETECT_BOUND[1], detect
    assert apply["Command"] <= APPLY_BOUND[0] and apply["http"] <= APPLY_BOUND[1], apply
    # the package went up in bulk: Sends, not one command per 930 bytes
    assert apply.get("Send", 0) >= 1
