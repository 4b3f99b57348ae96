"""A failure injected at each step of the apply (the lab's op-level fault injection, over real
WinRM) leaves the host fully restored; the module says what happened. Python API level:
`relayguard.exchange.apply.apply_relay`, the function modules/exchange_relay.py runs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange_remediation.labrun import ALLOWED_NETWORKS, INBOUND, Lab, relay_config, running_lab
from relayguard.exchange import payloads
from relayguard.exchange.apply import ApplyError, SmtpWait, apply_relay
from relayguard.exchange.desired import relay_desired
from relayguard.exchange.transport import WinRMClient
from relayguard.lab.exchange.state import Fault, TwinState

WRITE_OPS = {"exchange55.write_config", "modern.write_config", "exchange.restart_service"}
# profile -> number of write steps its plan has (asserted below)
CASES = {"ex55": 3, "anon": 4, "star": 4}
SPEC = "exchange55/sp2-noreroute:1,exchange2019/anon-relay:1,exchange2016/star-domain:1"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(SPEC, "127.0.55.1") as running:
        yield running


def host_of(lab: Lab, case: str) -> dict[str, Any]:
    platform = {"ex55": "exchange55", "anon": "exchange2019", "star": "exchange2016"}[case]
    return next(h for h in lab.hosts if h["platform"] == platform)


class FaultAtStep:
    """A WinRM client that, just before the `step`-th write, arms one lab fault for it."""

    def __init__(self, client: WinRMClient, lab: Lab, name: str, step: int, fault: Fault) -> None:
        self.client = client
        self.lab = lab
        self.name = name
        self.step = step
        self.fault = fault
        self.writes = 0

    def run_payload(self, payload: payloads.RenderedPayload) -> Any:
        if payload.op in WRITE_OPS:
            self.writes += 1
            if self.writes == self.step:
                fault = copy.copy(self.fault)
                fault.op = payload.op

                def arm(state: TwinState) -> None:
                    state.lab.faults.append(fault)

                self.lab.store(self.name).update(arm)
        return self.client.run_payload(payload)


def desired_for(host: dict[str, Any]) -> Any:
    return relay_desired(
        relay_allowed_networks=ALLOWED_NETWORKS,
        relay_authenticated=True,
        inbound_domains=[INBOUND],
        reject_unknown_recipients=True,
        relay_connector_name=f"Relay {host['server']}",
    )


def reset(lab: Lab, name: str, original: TwinState) -> None:
    lab.store(name).save(copy.deepcopy(original))


@pytest.fixture(scope="module")
def originals(lab: Lab) -> dict[str, TwinState]:
    return {h["name"]: copy.deepcopy(lab.state(h["name"])) for h in lab.hosts}


@pytest.mark.parametrize("after_apply", [False, True], ids=["before-write", "half-ran"])
@pytest.mark.parametrize(
    ("case", "step"), [(case, step) for case, n in CASES.items() for step in range(1, n + 1)]
)
def test_a_failed_step_leaves_the_host_fully_restored(
    lab: Lab,
    originals: dict[str, TwinState],
    tmp_path: Path,
    case: str,
    step: int,
    after_apply: bool,
) -> None:
    host = host_of(lab, case)
    name = host["name"]
    reset(lab, name, originals[name])
    before = relay_config(lab.state(name))
    fault = Fault(op="", message="injected: the step failed", after_apply=after_apply)
    client = FaultAtStep(lab.client(name), lab, name, step, fault)
    backup = tmp_path / "backup.json"
    with pytest.raises(ApplyError) as failed:
        apply_relay(
            client,
            desired_for(host),
            host=name,
            backup_file=backup,
            platform="exchange55" if case == "ex55" else "modern",
            smtp=SmtpWait(host["address"], int(host["smtp"].rsplit(":", 1)[1]), 30),
        )
    assert failed.value.restored and not failed.value.changed
    assert f"step {step}/{CASES[case]}" in str(failed.value)
    assert "injected: the step failed" in str(failed.value)
    assert "restored" in str(failed.value)
    assert backup.exists()
    state = lab.state(name)
    assert relay_config(state) == before
    assert state.relay_fingerprint() == state.lab.baseline_fingerprint
    if state.exchange55 is not None:
        assert not state.exchange55.pending_restart  # the IMS runs the restored parameters
    assert not state.lab.faults  # the fault fired


def test_without_a_fault_the_host_is_fully_changed(
    lab: Lab, originals: dict[str, TwinState], tmp_path: Path
) -> None:
    for case in CASES:
        host = host_of(lab, case)
        reset(lab, host["name"], originals[host["name"]])
        result = apply_relay(
            lab.client(host["name"]),
            desired_for(host),
            host=host["name"],
            backup_file=tmp_path / f"{case}.json",
        )
        assert len(result.plan.steps) == CASES[case]
        assert len(result.applied) == CASES[case]
        state = lab.state(host["name"])
        assert state.relay_fingerprint() != state.lab.baseline_fingerprint


def test_a_rollback_that_fails_too_says_the_host_may_be_half_changed(
    lab: Lab, originals: dict[str, TwinState], tmp_path: Path
) -> None:
    host = host_of(lab, "ex55")
    reset(lab, host["name"], originals[host["name"]])

    def arm(state: TwinState) -> None:
        state.lab.faults.append(Fault(op="exchange.restart_service", count=2, message="stuck"))

    lab.store(host["name"]).update(arm)
    with pytest.raises(ApplyError) as failed:
        apply_relay(
            lab.client(host["name"]),
            desired_for(host),
            host=host["name"],
            backup_file=tmp_path / "b.json",
        )
    assert not failed.value.restored and failed.value.changed
    assert "rolling back FAILED" in str(failed.value)
    assert str(tmp_path / "b.json") in str(failed.value)
    reset(lab, host["name"], originals[host["name"]])
