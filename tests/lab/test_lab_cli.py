"""`relayguard lab up/down/status`: idempotent, leaves nothing listening, state survives."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import winrm
from support.realserver import require_root, require_tool
from winrm.exceptions import InvalidCredentialsError

from relayguard.probe import ProbeOptions, probe_targets

from .labclient import (
    UNTRUSTED,
    lab,
    lab_up,
    listening_sockets,
    nmap_verdict,
    payload,
    swaks_accepts,
)
from .smtpclient import rcpt


def _addresses(doc: dict[str, Any]) -> set[str]:
    return {h["address"] for h in doc["hosts"]}


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)


def test_up_status_down_are_idempotent(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    try:
        doc = lab_up(directory, "--fleet", "exchange", "--first-address", "127.0.45.1")
        assert doc["already_up"] is False
        assert Path(doc["inventory"]) == directory / "inventory.yml"
        assert {h["name"] for h in doc["hosts"]} >= {"ex55-sp2-noreroute", "ex2019-compliant"}
        twin = doc["hosts"][0]
        assert twin["winrm"].startswith("https://127.0.45.1:5986")
        assert twin["password"] and twin["username"] == "relayguard"
        inventory = (directory / "inventory.yml").read_text()
        assert twin["password"] not in inventory  # credentials live in host_vars (0600)
        host_vars = directory / "host_vars" / f"{twin['name']}.yml"
        assert oct(host_vars.stat().st_mode & 0o777) == "0o600"
        assert json.loads(host_vars.read_text())["ansible_password"] == twin["password"]
        again = lab_up(directory, "--fleet", "exchange", "--first-address", "127.0.45.1")
        assert again["already_up"] is True
        assert again["hosts"] == doc["hosts"]  # same credentials: nothing restarted
        code, out, _ = lab("status", "--json", "--dir", str(directory))
        assert code == 0
        assert all(h["smtp_answers"] and h["winrm_answers"] for h in json.loads(out)["hosts"])
    finally:
        code, _, err = lab("down", "--dir", str(directory))
    assert code == 0, err
    assert listening_sockets(_addresses(doc)) == []
    assert lab("down", "--dir", str(directory))[0] == 0
    assert lab("status", "--dir", str(directory))[0] == 1
    assert not (directory / "secrets.json").exists()


def test_up_refuses_bad_specs(tmp_path: Path) -> None:
    code, _, err = lab("up", "--dir", str(tmp_path / "x"), "--hosts", "exchange2000:3")
    assert code == 1
    assert "unknown host kind" in err


@pytest.fixture(scope="module")
def default_lab() -> Iterator[dict[str, Any]]:
    # Not pytest's tmp_path: it is 0700, and Postfix's daemons must search every parent.
    parent = Path(tempfile.mkdtemp(prefix="relayguard-lab-"))
    parent.chmod(0o755)
    directory = parent / "lab"
    try:
        yield lab_up(directory, "--first-address", "127.0.46.1")
    finally:
        lab("down", "--dir", str(directory))
        shutil.rmtree(parent, ignore_errors=True)


def test_default_fleet_verdicts_agree_with_nmap_swaks_and_probe(
    default_lab: dict[str, Any],
) -> None:
    require_root()
    require_tool("nmap", "swaks")
    assert {h["platform"] for h in default_lab["hosts"]} >= {"exchange55", "postfix"}
    for host in default_lab["hosts"]:
        address, port = _split(host["smtp"])
        assert nmap_verdict(address, port) == host["expected"], host["name"]
        assert swaks_accepts(address, port) == (host["expected"] == "open"), host["name"]
    results = probe_targets(
        [h["smtp"] for h in default_lab["hosts"]],
        ProbeOptions(source_address=UNTRUSTED, local_domain="corp.example", port=25),
    )
    verdicts = {r.target: r.verdict.value for r in results}
    assert verdicts == {h["smtp"]: h["expected"] for h in default_lab["hosts"]}


def _session(
    doc: dict[str, Any], host: dict[str, Any], transport: str = "ntlm", password: str | None = None
) -> winrm.Session:
    return winrm.Session(
        host["winrm"],
        auth=(host["username"], password or host["password"]),
        transport=transport,
        server_cert_validation="validate",
        ca_trust_path=doc["ca"],
    )


def _run(
    session: winrm.Session, op: str, params: dict[str, Any] | None = None, filler: int = 0
) -> Any:
    result = session.run_ps(payload(op, params, filler))
    assert result.status_code == 0, result.std_err
    return json.loads(result.std_out)


def test_winrm_changes_change_smtp_and_survive_a_daemon_restart(
    default_lab: dict[str, Any],
) -> None:
    hosts = {h["name"]: h for h in default_lab["hosts"]}
    ex19, ex55 = hosts["ex2019-anon-relay"], hosts["ex55-sp2-reroute-open"]
    foreign = "<relaytest@example.com>"
    assert rcpt(_split(ex19["smtp"]), foreign, source=UNTRUSTED)[0] == 250

    with pytest.raises(InvalidCredentialsError):
        _session(default_lab, ex19, password="wrong-password").run_ps("x")

    modern = _session(default_lab, ex19)
    big = payload(
        "modern.write_config",
        {
            "Actions": [
                {
                    "Cmdlet": "Remove-ADPermission",
                    "Identity": "Default Frontend EX19A",
                    "User": "NT AUTHORITY\\ANONYMOUS LOGON",
                    "ExtendedRights": ["ms-Exch-SMTP-Accept-Any-Recipient"],
                },
                # Without recipient validation Exchange accepts every local part of its own
                # domains at RCPT (and bounces later): encapsulated forms would look relayed.
                {"Cmdlet": "Set-RecipientFilterConfig", "RecipientValidationEnabled": True},
            ]
        },
        filler=200,
    )
    assert len(big) > 8192
    too_long = modern.run_ps(big)  # as on Windows: over the command-line limit
    assert too_long.status_code != 0
    path = "C:\\Windows\\Temp\\relayguard-test.ps1"
    for i in range(0, len(big), 1500):
        chunk = base64.b64encode(big[i : i + 1500].encode()).decode()
        _run(modern, "file.append_chunk", {"path": path, "chunk_b64": chunk})
    out = _run(modern, "file.run", {"path": path})
    _run(modern, "file.remove", {"path": path})
    assert out["Applied"][0]["Identity"] == "EX19A\\Default Frontend EX19A"
    assert rcpt(_split(ex19["smtp"]), foreign, source=UNTRUSTED)[0] == 550
    address, port = _split(ex19["smtp"])
    options = ProbeOptions(source_address=UNTRUSTED, local_domain="corp.example", port=port)
    assert probe_targets([ex19["smtp"]], options)[0].verdict.value == "closed"
    if port == 25:  # nmap's script only runs against the SMTP ports it knows
        assert nmap_verdict(address, port) == "closed"

    legacy = _session(default_lab, ex55, transport="basic")
    _run(
        legacy,
        "exchange55.write_config",
        {"Parameters": {"RelayFlags": 10, "RelayAllowList": ["127.0.59.0;255.255.255.0"]}},
    )
    assert rcpt(_split(ex55["smtp"]), foreign, source=UNTRUSTED)[0] == 250  # needs a restart
    service = _run(legacy, "exchange.restart_service", {"Name": "MSExchangeIMC"})
    assert service["Status"] == "Running"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            code = rcpt(_split(ex55["smtp"]), foreign, source=UNTRUSTED, timeout=5)[0]
            break
        except OSError:
            time.sleep(0.2)
    assert code == 550

    unknown = modern.run_ps("Get-Process")
    assert unknown.status_code == 1
    assert b"is not recognized" in unknown.std_err

    # The daemon dies; `lab up` resumes it and every twin keeps its state.
    directory = Path(default_lab["inventory"]).parent
    pid = json.loads((directory / "daemon.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while (directory / "daemon.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    resumed = lab_up(directory)
    assert resumed.get("resumed") is True
    assert rcpt(_split(ex19["smtp"]), foreign, source=UNTRUSTED)[0] == 550
    assert rcpt(_split(ex55["smtp"]), foreign, source=UNTRUSTED)[0] == 550
    assert rcpt(_split(ex55["smtp"]), foreign, source="127.0.59.10")[0] == 250
