"""How the tests judge a mail host: the real probe CLI (direct) or engine (via a jump host),
and one SMTP envelope for "is mail to an inbound domain accepted?"."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
from pathlib import Path

from relayguard.probe import ProbeOptions, probe_targets
from relayguard.vantage import SshJump, ssh_opener

RELAYGUARD = Path(sys.executable).with_name("relayguard")
TIMEOUT = 30.0


def probe(target: str, source: str | None = None) -> dict[str, object]:
    """`relayguard probe --json TARGET` (optionally bound to `source`): the host record."""
    argv = [str(RELAYGUARD), "probe", "--json", "--timeout", "10", target]
    if source:
        argv += ["--source-address", source]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode in (0, 2, 3), f"probe failed ({done.returncode}): {done.stderr}"
    document = json.loads(done.stdout)
    host: dict[str, object] = document["hosts"][0]
    expected_status = {"closed": 0, "open": 2, "inconclusive": 3}[str(host["verdict"])]
    assert done.returncode == expected_status
    return host


def verdict(target: str, source: str | None = None) -> str:
    return str(probe(target, source)["verdict"])


def verdict_via(jump: SshJump, target: str) -> tuple[str, str]:
    """The probe engine's verdict and reason with every connection leaving from `jump`."""
    options = ProbeOptions(command_timeout=10.0, vantage=str(jump.vantage))
    results = probe_targets(
        [target], options, opener_factory=lambda o: ssh_opener(jump, o.connect_timeout)
    )
    return results[0].verdict.value, results[0].reason


def rcpt_code(host: str, port: int, recipient: str, source: str | None = None) -> int:
    """The reply code to RCPT TO:<recipient> after MAIL FROM:<> (no DATA is ever sent)."""
    source_address = (source, 0) if source else None
    with smtplib.SMTP(host, port, timeout=TIMEOUT, source_address=source_address) as smtp:
        smtp.ehlo("client.example.com")
        smtp.mail("<>")
        code, _ = smtp.rcpt(recipient)
        smtp.rset()
    return code
