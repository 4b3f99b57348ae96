"""Delivery confirmation against real Postfix (root): an open relay really relays to the sink;
one whose route to the sink fails really bounces to the sender at the sink; one whose route
leads nowhere accepts and never delivers.

Addresses (Postfix probe tests' range): instances 127.0.9.1-3:25, the sink 127.0.9.250:25
(Postfix delivers an `[ip]` literal to port 25), the probe from 127.0.9.200.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.realserver import require_root, require_tool

from relayguard.lab.postfix.instance import PostfixInstance

from .fleet import run_probe

SINK = "127.0.9.250"
SOURCE = "127.0.9.200"
CONFIRM = ("--confirm", "--sink", f"{SINK}:25", "--confirm-timeout", "60")
# Postfix maillog: cleanup logs each message it accepts, with its Message-ID.
ACCEPTED = re.compile(r"cleanup\[\d+\]: \w+: message-id=<relayguard\.")


@pytest.fixture(scope="module")
def root_dir() -> Iterator[Path]:
    require_root()
    require_tool("postfix", "postconf")
    root = Path(tempfile.mkdtemp(prefix="relayguard-confirm-tests-"))
    root.chmod(0o755)  # Postfix's daemons must reach the instance directories
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def instance(root: Path, name: str, address: str, **overrides: str) -> PostfixInstance:
    return PostfixInstance.from_profile(
        root / name,
        address,
        "open_relay",
        overrides={
            # Lab plumbing for delivery: no DNS in the lab, deliver at once, give up soon.
            "smtp_host_lookup": "native",
            "disable_dns_lookups": "yes",
            "maximal_queue_lifetime": "60s",
            "bounce_queue_lifetime": "60s",
            **overrides,
        },
    )


def accepted_count(server: PostfixInstance, timeout: float = 10.0) -> int:
    """Messages carrying relayguard's Message-ID that Postfix took in (bounded wait for the
    log writer)."""
    deadline = time.monotonic() + timeout
    count = len(ACCEPTED.findall(server.maillog_text()))
    while count == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        count = len(ACCEPTED.findall(server.maillog_text()))
    return count


def test_real_open_relay_postfix_relays_to_the_sink(root_dir: Path) -> None:
    with instance(root_dir, "relays", "127.0.9.1") as server:
        run = run_probe("--source-address", SOURCE, *CONFIRM, server.target)
        assert run.returncode == 2, run.stderr
        host = run.host(server.target)
        evidence = host["confirmation_evidence"]
        assert host["confirmation"] == "relayed", (evidence, server.maillog_tail(40))
        got = evidence["relayed"][0]
        received = " ".join(v for k, v in got["headers"] if k == "Received")
        assert "(Postfix)" in received and f"[{SOURCE}]" in received, received
        assert accepted_count(server) == 1


def test_real_postfix_that_cannot_deliver_bounces_to_the_sink(root_dir: Path) -> None:
    # transport(5): mail for the sink's recipient goes to the error(8) transport, which
    # bounces it; the bounce to the sender (also at the sink) goes out over SMTP.
    transport = root_dir / "bounce-transport"
    transport.write_text(f"relaytest@[{SINK}] error:5.1.2 relay route refused by the lab\n")
    transport.chmod(0o644)
    with instance(
        root_dir,
        "bounces",
        "127.0.9.2",
        transport_maps=f"texthash:{transport}",
        # smtpd would refuse an error(8)-routed recipient at RCPT; accept it, bounce later.
        smtpd_reject_unlisted_recipient="no",
    ) as server:
        run = run_probe("--source-address", SOURCE, *CONFIRM, server.target)
        host = run.host(server.target)
        evidence = host["confirmation_evidence"]
        assert host["confirmation"] == "bounced", (evidence, server.maillog_tail(40))
        ndr = evidence["bounces"][0]
        assert ndr["mail_from"] == "<>" and ndr["content_type"] == "multipart/report"
        assert any(k == "Status" and v.startswith("5.") for k, v in ndr["dsn"]), ndr["dsn"]
        assert accepted_count(server) == 1


def test_real_postfix_that_accepts_and_never_delivers_is_unconfirmed(root_dir: Path) -> None:
    # The route to the sink's domain leads to a port where nothing listens: Postfix accepts,
    # defers, retries later; nothing reaches the sink within the confirmation time bound.
    transport = root_dir / "dead-end-transport"
    transport.write_text(f"[{SINK}] smtp:[127.0.9.251]:10099\n")
    transport.chmod(0o644)
    with instance(
        root_dir, "swallows", "127.0.9.3", transport_maps=f"texthash:{transport}"
    ) as server:
        args = ("--confirm", "--sink", f"{SINK}:25", "--confirm-timeout", "3")
        run = run_probe("--source-address", SOURCE, *args, server.target)
        host = run.host(server.target)
        evidence = host["confirmation_evidence"]
        assert host["confirmation"] == "unconfirmed", (evidence, server.maillog_tail(40))
        assert evidence["sent"]["data_accepted"] is True
        assert evidence["relayed"] == evidence["bounces"] == []
        assert accepted_count(server) == 1
