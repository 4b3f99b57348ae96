"""exchange_relay and exchange_patch in real ansible-playbook runs against the lab's Exchange
twins over real WinRM (HTTPS, NTLM, the lab CA validated), in the four-pass pattern (check,
apply, check, apply: changed, changed, unchanged, unchanged), for every twin kind; then what
relayguard's probe and nmap's smtp-open-relay see, and backup + restore.

The tests of this module run in order on one lab (each builds on the previous one).
"""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.collection_specs import CONNECTION_SPEC, defaults
from support.nmap import NmapConclusion, run_smtp_open_relay
from support.realserver import require_root, require_tool

from exchange_remediation.labrun import (
    ALLOWED_NETWORKS,
    INBOUND,
    TRUSTED_SOURCE,
    UNTRUSTED_SOURCE,
    Lab,
    relay_config,
    run_playbook,
    running_lab,
)
from relayguard.exchange.patch_task import run_patch_task
from relayguard.exchange.relay_task import TaskFailure
from relayguard.lab.exchange.packages import LabPackage, sha256
from relayguard.probe import ProbeOptions, probe_document, probe_targets
from relayguard.vocabulary import Outcome, Verdict

# One twin of every kind, in the misconfigurations of the default fleet, plus a compliant one.
SPEC = ",".join(
    [
        "exchange55/sp2-noreroute:1",
        "exchange55/sp2-reroute-open:1",
        "exchange55/sp3-wide-allow:1",
        "exchange2013/anon-relay:1",
        "exchange2016/star-domain:1",
        "exchange2019/anon-relay:1",
        "exchangese/star-domain:1",
        "exchange2019/compliant:1",
    ]
)
# MS99-027 (KB Q237927): encapsulated addresses at the local domain; the quoted form is
# KB Q264330 (fixed in SP4, 5.5.2653).
MS99_027_TESTS = {"imceasmtp-local", "imceasmtp-srvname", "percent-hack-local"}
RELAYED = (Outcome.RELAYED,)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(SPEC, "127.0.54.1") as running:
        running.work.joinpath("reports").mkdir()
        yield running


def relay_vars(lab: Lab) -> dict[str, Any]:
    return {
        "relay_allowed_networks": ALLOWED_NETWORKS,
        "relay_inbound_domains": [INBOUND],
        "relay_connector_names": {
            h["name"]: f"Relay {h['server']}" for h in lab.hosts if h["platform"] != "exchange55"
        },
        "relay_reports_dir": str(lab.work / "reports"),
        "relay_run_id": "run-1",
    }


def smtp_target(host: dict[str, Any]) -> str:
    return str(host["smtp"])


def probe(lab: Lab, source: str) -> dict[str, dict[str, Any]]:
    """relayguard's probe from `source`: each host's entry of the relayguard.probe/1 document."""
    options = ProbeOptions(source_address=source, local_domain=INBOUND, command_timeout=20)
    results = probe_targets([smtp_target(h) for h in lab.hosts], options)
    document = probe_document(results, options)
    by_target = {smtp_target(h): h["name"] for h in lab.hosts}
    return {by_target[h["target"]]: h for h in document["hosts"]}


def relayed_ids(result: dict[str, Any]) -> set[str]:
    return {t["id"] for t in result["tests"] if t["outcome"] in RELAYED}


def four_pass(lab: Lab, playbook: str, extra: dict[str, Any]) -> list[dict[str, bool]]:
    passes = []
    for args in (("--check", "--diff"), ("--diff",), ("--check",), ()):
        run = run_playbook(lab, playbook, extra, *args)
        assert run.returncode == 0, run.output[-3000:]
        passes.append(run.changed())
    return passes


def test_exchange_relay_four_passes(lab: Lab) -> None:
    before = {h["name"]: relay_config(lab.state(h["name"])) for h in lab.hosts}
    check, apply, check_again, apply_again = four_pass(lab, "close_relay.yml", relay_vars(lab))
    to_fix = {h["name"] for h in lab.hosts if h["profile"] != "compliant"}
    assert {h for h, changed in check.items() if changed} == to_fix
    assert {h for h, changed in apply.items() if changed} == to_fix
    assert not any(check_again.values()), check_again
    assert not any(apply_again.values()), apply_again
    for name in to_fix:
        backup = lab.work / "reports" / "run-1" / "backup" / f"{name}.json"
        assert json.loads(backup.read_text())["schema"] == "relayguard.exchange-backup/1"
        assert relay_config(lab.state(name)) != before[name]
    compliant = next(h["name"] for h in lab.hosts if h["profile"] == "compliant")
    assert relay_config(lab.state(compliant)) == before[compliant]


def test_after_exchange_relay_only_the_allowed_networks_relay(lab: Lab) -> None:
    untrusted = probe(lab, UNTRUSTED_SOURCE)
    for host in lab.hosts:
        result = untrusted[host["name"]]
        if host["platform"] == "exchange55" and host["profile"].startswith("sp2"):
            # Routing restrictions cannot stop what the unpatched IMS relays (MS99-027).
            assert relayed_ids(result) <= MS99_027_TESTS | {"imcea-quoted"}, host["name"]
        elif host["platform"] == "exchange55":
            assert relayed_ids(result) <= {"imcea-quoted"}, host["name"]  # SP3: KB Q264330
        else:
            assert result["verdict"] == Verdict.CLOSED, (host["name"], result["reason"])
    trusted = probe(lab, TRUSTED_SOURCE)
    for host in lab.hosts:
        assert trusted[host["name"]]["verdict"] == Verdict.OPEN, host["name"]  # may still relay
        address, port = host["smtp"].rsplit(":", 1)
        with smtplib.SMTP(
            address, int(port), timeout=20, source_address=(UNTRUSTED_SOURCE, 0)
        ) as s:
            s.ehlo("outside.example.com")
            assert s.mail("antispam@example.com")[0] == 250
            assert s.rcpt(f"alice@{INBOUND}")[0] == 250, host["name"]


def ims_package(lab: Lab, version: str, applies_to: str, kb: str) -> dict[str, str]:
    """A lab package on the controller that gives msexcimc.exe `version` (uploaded in chunks)."""
    package = LabPackage(
        FileName=f"IMS-{kb}-{applies_to}-x86.exe",
        Product="Exchange 5.5",
        AppliesTo=applies_to,
        TargetFile="msexcimc.exe",
        FileVersion=version,
        KB=kb,
        PackageName=f"Exchange 5.5 IMS at {version} ({kb}, lab package)",
    )
    path = lab.work / package.FileName
    path.write_bytes(package.content())
    return {"src": str(path), "sha256": sha256(package.content()), "version": version}


def test_exchange_patch_four_passes_closes_ms99_027(lab: Lab) -> None:
    q237927 = lab.package("IMS-Q237927-SP2-x86.exe")
    su2019 = lab.package("Exchange2019-CU14-SU-lab.msp")
    su2016 = lab.package("Exchange2016-CU23-SU-lab.msp")
    by_profile = {(h["platform"], h["profile"]): h["name"] for h in lab.hosts}
    packages = {
        # From the controller, uploaded over WinRM in chunks.
        by_profile[("exchange55", "sp2-noreroute")]: {
            "src": q237927["file"],
            "sha256": q237927["sha256"],
            "version": "5.5.2650.1",
        },
        # Pre-staged on the host.
        by_profile[("exchange55", "sp2-reroute-open")]: {
            "path": "C:\\Patches\\IMS-Q237927-SP2-x86.exe",
            "sha256": q237927["sha256"],
            "version": "5.5.2650.1",
        },
        by_profile[("exchange2019", "anon-relay")]: {
            "path": "C:\\Patches\\Exchange2019-CU14-SU-lab.msp",
            "sha256": su2019["sha256"],
            "version": "15.2.1544.14",
        },
        by_profile[("exchange2016", "star-domain")]: {
            "path": "C:\\Patches\\Exchange2016-CU23-SU-lab.msp",
            "sha256": su2016["sha256"],
            "version": "15.1.2507.44",
        },
    }
    check, apply, check_again, apply_again = four_pass(
        lab, "patch.yml", {"patch_packages": packages}
    )
    assert {h for h, c in check.items() if c} == set(packages)
    assert {h for h, c in apply.items() if c} == set(packages)
    assert not any(check_again.values()) and not any(apply_again.values())
    for name, package in packages.items():
        state = lab.state(name)
        installed = state.exchange55.ImcFileVersion if state.exchange55 else None
        if state.modern is not None:
            installed = state.modern.ExSetupVersion
            assert not state.modern.RebootRequired  # reboot: true restarted it
        assert installed == package["version"], name
    untrusted = probe(lab, UNTRUSTED_SOURCE)
    for name in list(packages)[:2]:
        assert not relayed_ids(untrusted[name]) & MS99_027_TESTS, name


def test_sp4_level_ims_closes_the_quoted_form_and_nmap_agrees(lab: Lab) -> None:
    """KB Q264330's quoted IMCEA form is fixed at the SP4 level (5.5.2653): a package to that
    level on every 5.5 twin, then every twin of every kind is closed to relayguard and nmap."""
    packages = {}
    for host in lab.hosts:
        if host["platform"] != "exchange55":
            continue
        applies_to = "5.5.2650" if host["profile"] == "sp3-wide-allow" else "5.5.2448"
        packages[host["name"]] = ims_package(lab, "5.5.2653.0", applies_to, "Q264330")
    run = run_playbook(lab, "patch.yml", {"patch_packages": packages})
    assert run.returncode == 0, run.output[-3000:]
    assert {h for h, c in run.changed().items() if c} == set(packages)
    untrusted = probe(lab, UNTRUSTED_SOURCE)
    for host in lab.hosts:
        assert untrusted[host["name"]]["verdict"] == Verdict.CLOSED, (
            host["name"],
            untrusted[host["name"]]["reason"],
        )
    require_tool("nmap")
    require_root()
    for host in lab.hosts:
        address, port = host["smtp"].rsplit(":", 1)
        if port != "25":
            continue  # nmap's script runs only against the SMTP ports it knows
        nmap = run_smtp_open_relay(address, int(port), UNTRUSTED_SOURCE, timeout=120)
        if host["platform"] == "exchange55":
            # A 5.5 IMS answers 250 for any recipient at a local domain and NDRs unknown ones
            # later; a Routing-tab entry matches subdomains (KB Q169683, Q259531), so the
            # server's own name is local. nmap calls that 250 a relay; relayguard's outcome
            # for exactly those envelopes is "accepted" (not relayed, verdict closed).
            accepted = {
                t["rcpt_to"] for t in untrusted[host["name"]]["tests"] if t["outcome"] == "accepted"
            }
            assert {to for _, to in nmap.relayed_pairs} <= accepted, (host["name"], nmap.output)
        else:
            assert nmap.conclusion is NmapConclusion.CLOSED, (host["name"], nmap.output)


def test_restore_gives_back_each_twin_byte_for_byte(lab: Lab) -> None:
    extra = relay_vars(lab)
    originals = {}
    for host in lab.hosts:
        backup = Path(extra["relay_reports_dir"]) / "run-1" / "backup" / f"{host['name']}.json"
        if backup.exists():
            originals[host["name"]] = json.loads(backup.read_text())
    run = run_playbook(lab, "restore_relay.yml", extra, "--limit", ",".join(originals))
    assert run.returncode == 0, run.output[-3000:]
    assert all(run.changed()[name] for name in originals)
    for name in originals:
        state = lab.state(name)
        # The relay part of the state document is what it was at `lab up`, byte for byte.
        assert state.relay_fingerprint() == state.lab.baseline_fingerprint, name
    again = run_playbook(lab, "restore_relay.yml", extra, "--limit", ",".join(originals))
    assert again.returncode == 0 and not any(again.changed().values())


def test_exchange_patch_refuses_a_package_that_does_not_match(lab: Lab) -> None:
    """Wrong hash or wrong product/CU: refused with a clear message, nothing installed."""
    host = next(h for h in lab.hosts if h["platform"] == "exchange2013")
    su2019 = lab.package("Exchange2019-CU14-SU-lab.msp")
    before = lab.state(host["name"]).modern
    assert before is not None

    def attempt(**override: Any) -> str:
        params: dict[str, Any] = defaults(CONNECTION_SPEC)
        params.update(
            winrm_host=host["address"],
            winrm_username=host["username"],
            winrm_password=host["password"],
            ca_path=lab.manifest["ca"],
            package_path="C:\\Patches\\Exchange2019-CU14-SU-lab.msp",
            sha256=su2019["sha256"],
            target_version="15.2.1544.14",
            reboot=False,
        )
        params.update(override)
        with pytest.raises(TaskFailure) as refused:
            run_patch_task(params, check_mode=False)
        assert refused.value.details["changed"] is False
        return str(refused.value)

    assert "applies only to its own CU" in attempt()  # a 2019 CU14 update on 2013 CU23
    assert "SHA-256" in attempt(target_version="15.0.1497.99", sha256="0" * 64)
    assert "does not apply" in attempt(target_version="15.0.1497.99")  # msiexec 1642
    after = lab.state(host["name"]).modern
    assert after is not None and after.ExSetupVersion == before.ExSetupVersion
