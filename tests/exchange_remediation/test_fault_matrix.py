"""Every fault the lab's twins can inject, at every step of an Exchange change, then reruns.

Steps: the first write (right after the backup is taken), a later write (mid-write: an earlier
write already went through), the service restart, and the patch install. Faults: the WinRM
connection dropped before the command ran or after it ran (its answer lost), the command
failing with nothing done or after its write was applied, and the host hanging — with
nothing done, or after its write was applied. Wire faults are the twin endpoint's
(`relayguard.lab.wsman.injection`), the others the twin's op-level `Fault`.

For each: the host is never left half-changed (it is exactly as before or exactly as
desired), the failure says which step failed, how, and whether the host changed; the backup
is intact and puts the host back; a plain rerun converges and a further rerun changes
nothing. Everything goes through `run_relay_task` / `run_patch_task`, the functions
modules/exchange_relay.py and modules/exchange_patch.py run.

Addresses: twins on 127.0.51.x (served in this process, see `wirelab.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.collection_specs import CONNECTION_SPEC, defaults

from exchange_remediation.labrun import ALLOWED_NETWORKS, INBOUND, relay_config
from exchange_remediation.wirelab import WireLab, wire_lab
from relayguard.exchange import payloads
from relayguard.exchange.apply import read_backup
from relayguard.exchange.current import read_relay_config
from relayguard.exchange.patch_task import run_patch_task
from relayguard.exchange.relay_task import TaskFailure, run_relay_task
from relayguard.exchange.transport import FailureCause, WinRMClient, fits_command_line
from relayguard.lab.exchange.state import Fault, TwinState
from relayguard.lab.wsman.injection import FaultKind, InjectedFault

SPEC = "exchange55/sp2-noreroute:1,exchange2019/anon-relay:1"
FIRST_ADDRESS = "127.0.51.1"
PLATFORMS = {"ex55": "exchange55", "ex2019": "exchange2019"}
WRITE_OPS = {"exchange55.write_config", "modern.write_config", "exchange.restart_service"}
INSTALL_OP = "exchange.install_patch"
INJECTED = "injected by the fault matrix"


@dataclass(frozen=True)
class FaultKindCase:
    """One way a step can go wrong, and whether the step's change took effect."""

    wire: FaultKind | None  # a fault on the twin's WinRM endpoint, or
    op_mode: str | None  # an op-level fault of the twin ("error" or "hang"), applied first
    ran: bool  # the step's change reached the host before the failure
    says: str  # what the failure message carries

    def arm(self, lab: WireLab, name: str, payload: payloads.RenderedPayload) -> None:
        op = payload.op
        if self.wire is not None:
            # On the wire, a script too long for one command line runs in a `file.exec`
            # command that gets it on stdin: that is the command the step's fault hits. It
            # runs when the Send that closes its stdin arrives, so an answer lost after the
            # run is that Send's.
            wire_op, action = op, "Command"
            if not fits_command_line(payload.script):
                wire_op = "file.exec"
                action = "Send" if self.wire is FaultKind.DROP_RESPONSE else "Command"
            lab.endpoint(name).faults.add(
                InjectedFault(self.wire, action=action, op=wire_op, times=1, message=INJECTED)
            )
            return
        fault = Fault(
            op=op,
            mode="hang" if self.op_mode == "hang" else "error",
            message=INJECTED,
            hang_seconds=60.0,
            after_apply=True,
        )

        def add(state: TwinState) -> None:
            state.lab.faults.append(fault)

        lab.store(name).update(add)

    def fired(self, lab: WireLab, name: str) -> bool:
        return not lab.endpoint(name).faults.active() and not lab.state(name).lab.faults


KINDS = {
    "drop-before-run": FaultKindCase(
        FaultKind.DROP_REQUEST, None, False, FailureCause.CONNECTION_FAILED.value
    ),
    "drop-after-run": FaultKindCase(
        FaultKind.DROP_RESPONSE, None, True, FailureCause.CONNECTION_FAILED.value
    ),
    "fail": FaultKindCase(FaultKind.FAIL_COMMAND, None, False, INJECTED),
    "fail-after-write": FaultKindCase(None, "error", True, INJECTED),
    "hang": FaultKindCase(FaultKind.HANG, None, False, FailureCause.TIMEOUT.value),
    "hang-after-write": FaultKindCase(None, "hang", True, FailureCause.TIMEOUT.value),
}


class ArmedClient:
    """A WinRM client that arms one fault just before the `occurrence`-th call of `ops`."""

    def __init__(
        self,
        client: WinRMClient,
        ops: set[str],
        occurrence: int,
        arm: Callable[[payloads.RenderedPayload], None],
    ) -> None:
        self.client = client
        self.ops = ops
        self.occurrence = occurrence
        self.arm = arm
        self.seen = 0
        self.armed_op: str | None = None

    def run_payload(self, payload: payloads.RenderedPayload) -> Any:
        if payload.op in self.ops:
            self.seen += 1
            if self.seen == self.occurrence:
                self.armed_op = payload.op
                self.arm(payload)
        return self.client.run_payload(payload)


@pytest.fixture(scope="module")
def lab() -> Iterator[WireLab]:
    with wire_lab(SPEC, FIRST_ADDRESS) as running:
        yield running


@pytest.fixture(scope="module")
def originals(lab: WireLab) -> dict[str, TwinState]:
    return {h["name"]: copy.deepcopy(lab.state(h["name"])) for h in lab.hosts}


def host_of(lab: WireLab, case: str) -> dict[str, Any]:
    return next(h for h in lab.hosts if h["platform"] == PLATFORMS[case])


def reset(lab: WireLab, name: str, originals: dict[str, TwinState]) -> None:
    lab.store(name).save(copy.deepcopy(originals[name]))


def connection_params(host: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = defaults(CONNECTION_SPEC)
    params.update(
        winrm_host=host["address"],
        winrm_username=host["username"],
        winrm_password=host["password"],
        smtp_port=int(host["smtp"].rsplit(":", 1)[1]),
        smtp_timeout=30,
    )
    return params


def relay_params(host: dict[str, Any], backup: Path) -> dict[str, Any]:
    return connection_params(host) | {
        "relay_allowed_networks": ALLOWED_NETWORKS,
        "relay_authenticated": True,
        "inbound_domains": [INBOUND],
        "reject_unknown_recipients": True,
        "relay_connector_name": f"Relay {host['server']}",
        "host_name": host["name"],
        "backup_file": str(backup),
    }


def factory(client: Any) -> Callable[[Any], Any]:
    return lambda _options: client


def relay_run(lab: WireLab, host: dict[str, Any], backup: Path, client: Any = None) -> Any:
    client = client or lab.quick_client(host["name"])
    return run_relay_task(
        relay_params(host, backup), check_mode=False, client_factory=factory(client)
    )


def relay_restore(lab: WireLab, host: dict[str, Any], backup: Path) -> dict[str, Any]:
    params = connection_params(host) | {"state": "restored", "backup_file": str(backup)}
    client = lab.quick_client(host["name"])
    return run_relay_task(params, check_mode=False, client_factory=factory(client))


@dataclass(frozen=True)
class Plan:
    platform: str
    steps: list[dict[str, Any]]
    desired: str  # the twin's relay configuration once the change is fully applied
    document_before: dict[str, Any]  # what relayguard reads before the change

    def index(self, where: str) -> int:
        """1-based number of the plan step where a fault goes."""
        restart = "exchange.restart_service"
        if where == "restart":
            return next(i for i, s in enumerate(self.steps, 1) if s["op"] == restart)
        writes = [i for i, s in enumerate(self.steps, 1) if s["op"] != restart]
        return writes[{"after-backup": 0, "mid-write": 1}[where]]


# Where a relay change can fail; Exchange 2013+ applies connector changes without a restart.
RELAY_STEPS = [
    ("ex55", "after-backup"),
    ("ex55", "mid-write"),
    ("ex55", "restart"),
    ("ex2019", "after-backup"),
    ("ex2019", "mid-write"),
]


@pytest.fixture(scope="module")
def plans(
    lab: WireLab, originals: dict[str, TwinState], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Plan]:
    """Each host's plan and fully changed configuration, from a run without a fault; then
    its backup is restored, which proves a backup of that content puts the host back."""
    found = {}
    for case in PLATFORMS:
        host = host_of(lab, case)
        reset(lab, host["name"], originals)
        document = dict(read_relay_config(lab.quick_client(host["name"])).document)
        result = relay_run(lab, host, tmp_path_factory.mktemp(case) / "backup.json")
        assert result["changed"] and len(result["applied"]) == len(result["steps"])
        found[case] = Plan(
            result["platform"], result["steps"], relay_config(lab.state(host["name"])), document
        )
        assert found[case].desired != relay_config(originals[host["name"]])
        # That backup (the document every faulted run's backup must equal) restores the host.
        restored = relay_restore(lab, host, Path(result["backup_file"]))
        assert restored["changed"]
        state = lab.state(host["name"])
        assert relay_config(state) == relay_config(originals[host["name"]])
        assert state.relay_fingerprint() == state.lab.baseline_fingerprint
    # Every step of the matrix exists.
    for case, where in RELAY_STEPS:
        found[case].index(where)
    return found


@pytest.fixture(autouse=True)
def clear_faults(lab: WireLab) -> Iterator[None]:
    yield
    for host in lab.hosts:
        lab.endpoint(host["name"]).faults.clear()  # releases a request still held by a HANG


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(("case", "where"), RELAY_STEPS)
def test_a_relay_fault_leaves_the_host_whole_and_a_rerun_converges(
    lab: WireLab,
    originals: dict[str, TwinState],
    plans: dict[str, Plan],
    tmp_path: Path,
    case: str,
    where: str,
    kind: str,
) -> None:
    host = host_of(lab, case)
    name = host["name"]
    reset(lab, name, originals)
    before = relay_config(lab.state(name))
    plan = plans[case]
    step = plan.index(where)
    fault = KINDS[kind]
    writes_before_step = sum(1 for s in plan.steps[: step - 1] if s["op"] in WRITE_OPS)
    client = ArmedClient(
        lab.quick_client(name),
        WRITE_OPS,
        writes_before_step + 1,
        lambda payload: fault.arm(lab, name, payload),
    )
    backup = tmp_path / "backup.json"

    with pytest.raises(TaskFailure) as failed:
        relay_run(lab, host, backup, client)

    # The fault fired at the intended step.
    assert client.armed_op == plan.steps[step - 1]["op"]
    assert fault.fired(lab, name)
    # Never half-changed: rolled back to exactly what it was.
    state = lab.state(name)
    assert relay_config(state) in (before, plan.desired)
    assert relay_config(state) == before
    assert state.relay_fingerprint() == state.lab.baseline_fingerprint
    if state.exchange55 is not None:
        assert not state.exchange55.pending_restart  # the IMS runs what is configured
    # The failure says what happened.
    message = str(failed.value)
    details = failed.value.details
    assert f"step {step}/{len(plan.steps)} ({plan.steps[step - 1]['summary']}) failed" in message
    assert fault.says in message
    assert "restored to its configuration before the run" in message
    assert details["restored"] is True and details["changed"] is False
    assert details["backup_file"] == str(backup)
    # The backup is intact: this host's configuration as read before the run, the same
    # document the `plans` fixture restores from a fully changed host.
    saved = read_backup(backup)
    assert (saved["host"], saved["platform"]) == (name, plan.platform)
    assert saved["config"] == plan.document_before

    # A plain rerun converges; a further rerun changes nothing.
    rerun = relay_run(lab, host, tmp_path / "rerun.json")
    assert rerun["changed"] and rerun["applied"] == [s["summary"] for s in plan.steps]
    assert relay_config(lab.state(name)) == plan.desired
    again = relay_run(lab, host, tmp_path / "again.json")
    assert not again["changed"] and again["applied"] == []
    assert not (tmp_path / "again.json").exists()  # no change, no backup


# --------------------------------------------------------------------------- patch install

# Where a patch can fail: the installer run (the 5.5 IMS hotfix uploaded from the controller
# in chunks; the 2019 update pre-staged on the host), and the reboot the 2019 update asks for.
PATCH_STEPS = [
    ("ex55", INSTALL_OP),
    ("ex2019", INSTALL_OP),
    ("ex2019", "exchange.restart_computer"),
]


def patch_params(lab: WireLab, case: str, host: dict[str, Any]) -> dict[str, Any]:
    if case == "ex55":
        package = lab.package("IMS-Q237927-SP2-x86.exe")
        where = {"package_src": package["file"], "target_version": "5.5.2650.1"}
    else:
        package = lab.package("Exchange2019-CU14-SU-lab.msp")
        where = {
            "package_path": "C:\\Patches\\Exchange2019-CU14-SU-lab.msp",
            "target_version": "15.2.1544.14",
            "reboot": True,
        }
    return connection_params(host) | {"sha256": package["sha256"]} | where


def installed(state: TwinState) -> str:
    if state.exchange55 is not None:
        return state.exchange55.ImcFileVersion
    assert state.modern is not None
    return state.modern.ExSetupVersion


def reboot_pending(state: TwinState) -> bool:
    return state.modern is not None and state.modern.RebootRequired


def updates(state: TwinState) -> list[str]:
    return [] if state.modern is None else [u.Key for u in state.modern.Updates]


def patch_run(lab: WireLab, case: str, host: dict[str, Any], client: Any = None) -> Any:
    client = client or lab.quick_client(host["name"])
    return run_patch_task(
        patch_params(lab, case, host), check_mode=False, client_factory=factory(client)
    )


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(("case", "op"), PATCH_STEPS)
def test_a_patch_fault_leaves_the_host_whole_and_a_rerun_converges(
    lab: WireLab, originals: dict[str, TwinState], case: str, op: str, kind: str
) -> None:
    host = host_of(lab, case)
    name = host["name"]
    reset(lab, name, originals)
    target = patch_params(lab, case, host)["target_version"]
    before = lab.state(name)
    version_before, updates_before = installed(before), updates(before)
    assert version_before != target
    fault = KINDS[kind]
    client = ArmedClient(
        lab.quick_client(name), {op}, 1, lambda payload: fault.arm(lab, name, payload)
    )

    with pytest.raises(TaskFailure) as failed:
        patch_run(lab, case, host, client)

    assert client.armed_op == op and fault.fired(lab, name)
    state = lab.state(name)
    # Never half-changed: the binary is the old one or the new one, the update is listed
    # exactly when it is installed, and the relay configuration was not touched.
    version_after = installed(state)
    assert version_after in (version_before, target)
    if version_after == target:
        assert updates(state) == updates_before + ([] if case == "ex55" else ["KB0000001"])
    else:
        assert updates(state) == updates_before
    assert relay_config(state) == relay_config(before)
    # The failure says which step failed, how, and whether the host changed.
    message = str(failed.value)
    assert fault.says in message
    changed = failed.value.details["changed"]
    if op == INSTALL_OP:
        assert message.startswith("installing ") and op in message
        assert version_after == (target if fault.ran else version_before)
        assert changed is fault.ran
        assert (f"now {target}: the package was installed" in message) is fault.ran
        assert (f"still {version_before}: nothing was installed" in message) is not fault.ran
    else:  # the reboot after a good install
        assert version_after == target and changed is True
        assert f"installed {target}; the reboot failed" in message
        assert reboot_pending(state) is not fault.ran
    if lab.endpoint(name).scratch.root.exists():  # an uploaded package never stays behind
        assert not [p for p in lab.endpoint(name).scratch.root.rglob("*") if p.is_file()]

    # A plain rerun converges (patched, no reboot pending); a further rerun changes nothing.
    left_to_do = version_after != target or reboot_pending(state)
    rerun = patch_run(lab, case, host)
    assert rerun["changed"] is left_to_do
    state = lab.state(name)
    assert installed(state) == target and not reboot_pending(state)
    again = patch_run(lab, case, host)
    assert not again["changed"] and again["version_before"] == again["version_after"] == target
    assert not again["reboot_required"]
