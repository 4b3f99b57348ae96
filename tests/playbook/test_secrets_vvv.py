"""secure-relay.yml at -vvv on the lab: every host closed — the Exchange 5.5 SP2 twin through
the SP4-level IMS package (KB Q264330), over SMB — and none of the lab's passwords anywhere: not in
the output, not in the reports, not in the lab's logs."""

from __future__ import annotations

from pathlib import Path

from playbook.fleet import lab_fleet

# The 5.5 twin is reached over SMB (relay_exchange_channel's default for exchange55), where
# the Routing tab cannot be written: a rerouting SP2 twin, which SMB can close.
FLEET = "exchange55/sp2-reroute-open:1,exchange2019/anon-relay:1,postfix/open_relay:1"


def _texts(root: Path) -> list[tuple[Path, str]]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            found.append((path, path.read_text(encoding="utf-8", errors="replace")))
    return found


def test_vvv_run_closes_the_fleet_and_leaks_no_password() -> None:
    with lab_fleet(FLEET, "127.0.43.1") as fleet:
        passwords = [str(h["password"]) for h in fleet.hosts if h.get("password")]
        assert passwords  # the Exchange twins have WinRM credentials
        run = fleet.playbook("-vvv")
        assert run.returncode == 0, run.explain()
        for name, host in fleet.report_hosts().items():
            assert host["status"] in ("remediated", "compliant"), (name, host["error"])
            assert (host["after"] or host["before"])["verdict"] == "closed", name
        ex55 = next(h for n, h in fleet.report_hosts().items() if n.startswith("ex55"))
        assert ex55["patch"]["compliant"] is True, ex55["patch"]
        # the secret hunt: output, every report file, the lab's own logs and state
        places = [(Path("ansible-playbook -vvv output"), run.output)]
        places += _texts(fleet.reports)
        places += [(p, t) for p, t in _texts(fleet.lab) if p.suffix in (".log", ".jsonl")]
        for password in passwords:
            leaked = [str(path) for path, text in places if password in text]
            assert not leaked, f"a lab password appears in {leaked}"
