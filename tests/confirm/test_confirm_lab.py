"""Delivery confirmation against lab twins: relayed, bounced, unconfirmed; DATA only on --confirm.

The twins really pass mail on (`relayguard.lab.exchange.delivery`): the anonymous-relay
Exchange 2019 twin delivers to the IP literal, the Exchange 5.5 "Do not reroute" twin sends an
NDR to the envelope sender, and an anonymous-relay twin whose deliveries go to a closed port accepts
and never delivers. Each twin logs one entry per message it accepted with DATA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.realserver import require_root

from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.state import LabKnobs
from relayguard.lab.fleet import control
from relayguard.lab.fleet.layout import LabDir
from relayguard.vocabulary import Platform

from .fleet import CLOSED_PORT, SINK, SINK_PORT, SOURCE, Twin, next_address, run_probe

CONFIRM = ("--confirm", "--sink", f"{SINK}:{SINK_PORT}", "--confirm-timeout", "4")


def spec(name: str) -> profiles.TwinSpec:
    # No tarpit: the lab waits 0 s where Exchange's TarpitInterval would wait 5 s.
    knobs = LabKnobs(tarpit_seconds=0.0)
    return profiles.TwinSpec(name=name, server="EXT", address=next_address(), knobs=knobs)


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[dict[str, Twin]]:
    started: dict[str, Twin] = {}
    try:
        for name, state, port in (
            ("bounces", profiles.ex55_sp2_noreroute(spec("bounces")), SINK_PORT),
            (
                "relays",
                profiles.modern_anon_relay(spec("relays"), Platform.EXCHANGE2019),
                SINK_PORT,
            ),
            (
                "swallows",
                profiles.modern_anon_relay(spec("swallows"), Platform.EXCHANGE2019),
                CLOSED_PORT,
            ),
            ("closed", profiles.ex55_sp4_closed(spec("closed")), SINK_PORT),
        ):
            started[name] = Twin(state, tmp_path, port).start()
        yield started
    finally:
        for twin in started.values():
            twin.stop()


def test_confirmation_tells_relay_bounce_and_silence_apart(
    twins: dict[str, Twin], tmp_path: Path
) -> None:
    targets = [t.target for t in twins.values()]
    report = tmp_path / "report"
    run = run_probe(
        "--source-address",
        SOURCE,
        "--report",
        str(report),
        *CONFIRM,
        *targets,
        twins["relays"].target,
    )
    assert run.returncode == 2, run.stderr
    # The report shows the evidence: the control and the NDR's status.
    written = "\n".join(p.read_text() for p in report.rglob("*.md"))
    assert "delivery confirmation" in written and "accepts, then bounces" in written
    assert "Undeliverable" in written and "5.0.0" in written

    hosts = [h for h in run.document["hosts"] if h["target"] == twins["relays"].target]
    assert len(hosts) == 2  # named twice: probed twice, confirmed once
    confirmed = [h for h in hosts if h["confirmation"] is not None]
    assert len(confirmed) == 1
    relays = confirmed[0]
    assert relays["confirmation"] == "relayed", relays["confirmation_evidence"]
    got = relays["confirmation_evidence"]["relayed"][0]
    assert got["peer"] == twins["relays"].address
    received = [v for k, v in got["headers"] if k == "Received"]
    assert received and f"[{SOURCE}]" in received[0]

    bounces = run.host(twins["bounces"].target)
    assert bounces["confirmation"] == "bounced", bounces["confirmation_evidence"]
    ndr = bounces["confirmation_evidence"]["bounces"][0]
    assert ndr["mail_from"] == "<>" and ndr["content_type"] == "multipart/report"
    assert ["Status", "5.0.0"] in ndr["dsn"]

    swallows = run.host(twins["swallows"].target)
    assert swallows["confirmation"] == "unconfirmed"
    assert swallows["confirmation_evidence"]["sent"]["data_accepted"] is True

    # Nothing relayed: no message, and the fields say "not asked" (null). A routed form at the
    # server's own name may be accepted at RCPT: its name is a subdomain of the inbound domain,
    # which a Routing-tab entry matches (KB Q169683, Q259531), and the IMS answers local
    # recipients with 250 and a later NDR; the probe calls that "accepted", never "relayed".
    closed = run.host(twins["closed"].target)
    assert closed["verdict"] == "closed"
    own = "@ext.corp.example>"
    assert not any(t["outcome"] == "relayed" for t in closed["tests"])
    assert all(
        (t["rcpt_to"] or "").lower().endswith(own)
        for t in closed["tests"]
        if t["outcome"] == "accepted"
    ), [(t["id"], t["rcpt_to"]) for t in closed["tests"] if t["outcome"] == "accepted"]
    # the accepted form is confirmed like any other: nothing reaches the sink
    assert closed["confirmation"] in (None, "unconfirmed"), closed["confirmation_evidence"]

    # Never more than one message per host; only to the sink.
    for name, twin in twins.items():
        assert twin.data_count() == 1 or (name == "closed" and twin.data_count() == 0), (
            name,
            twin.log(),
        )
        for entry in twin.log():
            for rcpt in entry.get("recipients", []):
                assert rcpt["rcpt"] == f"relaytest@[{SINK}]"


def test_nothing_is_sent_without_confirm(twins: dict[str, Twin]) -> None:
    run = run_probe("--source-address", SOURCE, *(t.target for t in twins.values()))
    assert run.returncode == 2, run.stderr
    for twin in twins.values():
        host = run.host(twin.target)
        assert host["confirmation"] is None and host["confirmation_evidence"] is None
        assert twin.data_count() == 0
        assert not any(line == "DATA" for _, line in host["transcript"])


def test_sink_options_need_each_other() -> None:
    for args in (("--confirm",), ("--sink", f"{SINK}:{SINK_PORT}"), ("--confirm", "--sink", "x")):
        run = run_probe(*args, "127.0.47.250:10025")
        assert run.returncode == 1 and "sink" in run.stderr and run.document == {}


def test_relayguard_lab_up_twins_relay_and_bounce_to_a_sink_on_port_25(tmp_path: Path) -> None:
    """The lab as `relayguard lab up` runs it (daemon, port 25): confirmed on both twins."""
    require_root()
    lab = LabDir(tmp_path / "lab")
    hosts = "exchange55/sp2-noreroute:1,exchange2019/anon-relay:1"
    try:
        doc = control.up(lab, control.UpOptions(hosts=hosts, first_address="127.0.48.101"))
        smtp = {h["profile"]: h["smtp"] for h in doc["hosts"]}
        sink = ("--confirm", "--sink", SINK, "--confirm-timeout", "30")
        run = run_probe("--source-address", SOURCE, *sink, *smtp.values())
        assert run.returncode == 2, run.stderr
        assert run.host(smtp["sp2-noreroute"])["confirmation"] == "bounced"
        assert run.host(smtp["anon-relay"])["confirmation"] == "relayed"
    finally:
        control.down(lab)
