"""Count the WinRM round trips of one Exchange host's detect and apply against a twin.

Shared by `test_round_trips.py` (a regression guard on the counts) and
`benchmarks/bench_winrm.py` (the figures, with wall time). The twin's endpoint counts what
reaches it (`EndpointStats`): HTTP requests, authentication legs included, and each SOAP
action (Create, Command, Send, Receive, Signal, Delete).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support.collection_specs import PATCH_SPEC, defaults

from exchange_remediation.labrun import batch_relay_options
from exchange_remediation.wirelab import WireLab
from relayguard.exchange import batch, connection

SPEC = "exchange2019/anon-relay:1"
PACKAGE = "Exchange2019-CU14-SU-lab.msp"
TARGET_VERSION = "15.2.1544.14"


def host_request(lab: WireLab, host: dict[str, Any], backups: Path) -> batch.HostRequest:
    """exchange_batch's request for `host`: close the relay, install the lab's CU14 update."""
    relay = batch_relay_options(lab.manifest["ca"], host, backups)
    package = lab.package(PACKAGE)
    patch = defaults(PATCH_SPEC) | {
        "package_src": package["file"],
        "sha256": package["sha256"],
        "target_version": TARGET_VERSION,
    }
    return batch.HostRequest(host["name"], relay, patch)


def measure(lab: WireLab, backups: Path) -> dict[str, dict[str, Any]]:
    """Detect (exchange_batch's detect: assess and plan) then apply (relay change and security
    update) on the first host: for each, the endpoint's counts and the wall time in seconds."""
    host = lab.hosts[0]
    endpoint = lab.endpoint(host["name"])
    request = host_request(lab, host, backups)
    figures: dict[str, dict[str, Any]] = {}
    for phase, work in (
        ("detect", lambda: batch.detect_host(request, connection.client_for)),
        ("apply", lambda: batch.apply_host(request, connection.client_for, check_mode=False)),
    ):
        endpoint.stats.reset()
        started = time.monotonic()
        result = work()
        elapsed = time.monotonic() - started
        figures[phase] = {**endpoint.stats.snapshot(), "seconds": round(elapsed, 2)}
        figures[phase]["result"] = result
    return figures
