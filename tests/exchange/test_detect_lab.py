"""`exchange.detect` over real WinRM (HTTPS, NTLM, the lab CA validated) against each Exchange
twin kind of the lab's exchange fleet (docs/lab.md), and the catalog's reading of the result.

The detect script is over cmd.exe's command-line limit, so this also runs the chunked path
(file.append_chunk / file.run / file.remove) on every twin. Addresses: 127.0.57.1 and
127.0.57.100 upwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from relayguard.cli import main
from relayguard.exchange import payloads
from relayguard.exchange.catalog import BuildExplanation, explain
from relayguard.exchange.transport import Secret, WinRMClient, WinRMOptions, command_line

FIRST_ADDRESS = "127.0.57.1"
OTHER_KINDS_ADDRESS = "127.0.57.100"
TODAY = date(2026, 11, 27)

# The lab's exchange fleet (docs/lab.md, "Default fleet"): what detection must find.
EXPECTED = {
    "ex55-sp2-noreroute": ("Exchange Server 5.5", "SP2", False),
    "ex55-sp2-reroute-open": ("Exchange Server 5.5", "SP2", False),
    "ex55-sp3-wide-allow": ("Exchange Server 5.5", "SP3", True),
    "ex2019-anon-relay": ("Exchange Server 2019", "CU14", None),
    "ex2016-star-domain": ("Exchange Server 2016", "CU23", None),
    "ex2019-compliant": ("Exchange Server 2019", "CU15", None),
}


def _lab(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["lab", *args])
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _running_lab(*selection: str) -> Iterator[dict[str, Any]]:
    parent = Path(tempfile.mkdtemp(prefix="relayguard-exchange-"))
    directory = parent / "lab"
    try:
        code, out, err = _lab("up", "--json", "--dir", str(directory), *selection)
        assert code == 0, err
        yield json.loads(out)
    finally:
        _lab("down", "--dir", str(directory))
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def exchange_lab() -> Iterator[dict[str, Any]]:
    with _running_lab("--fleet", "exchange", "--first-address", FIRST_ADDRESS) as lab:
        yield lab


def _client(lab: dict[str, Any], host: dict[str, Any]) -> WinRMClient:
    address, port = host["winrm"].split("//")[1].split("/")[0].rsplit(":", 1)
    return WinRMClient(
        WinRMOptions(
            host=address,
            port=int(port),
            username=host["username"],
            password=Secret(host["password"]),
            ca_trust_path=lab["ca"],
            command_timeout=120.0,
        )
    )


def _explain(document: dict[str, Any]) -> BuildExplanation:
    if document["Exchange55"] is not None:
        x55 = document["Exchange55"]
        return explain(
            f"5.5.{x55['SetupKey']['NewestBuild']}",
            as_of=TODAY,
            msexcimc=x55["Imc"]["FileVersion"],
        )
    exsetup = document["Exchange15"]["ExSetup"]
    parts = ("FileMajorPart", "FileMinorPart", "FileBuildPart", "FilePrivatePart")
    return explain(".".join(str(exsetup[p]) for p in parts), as_of=TODAY)


def test_detect_script_needs_the_chunked_path() -> None:
    script = payloads.render("exchange.detect", {}).script
    assert len(command_line(script)) > 8191


def test_detect_every_exchange_twin_kind(exchange_lab: dict[str, Any]) -> None:
    hosts = {h["name"]: h for h in exchange_lab["hosts"]}
    assert set(EXPECTED) <= set(hosts)
    seen_platforms = set()
    for name, (product, level, relay_fix) in EXPECTED.items():
        document = _client(exchange_lab, hosts[name]).run_payload(
            payloads.render("exchange.detect", {})
        )
        assert set(document) == {"ComputerName", "Exchange55", "Exchange15", "RebootPending"}
        assert (document["Exchange55"] is None) != (document["Exchange15"] is None), name
        result = _explain(document)
        assert (result.product, result.level, result.relay_fix) == (product, level, relay_fix)
        assert result.known, name
        seen_platforms.add(result.platform)
    assert seen_platforms == {"exchange55", "exchange2016", "exchange2019"}


def test_detect_exchange2013_and_subscription_edition() -> None:
    """The kinds the exchange fleet leaves out: product from the version scheme, known build."""
    selection = ("--hosts", "exchange2013:1,exchangese:1", "--first-address", OTHER_KINDS_ADDRESS)
    with _running_lab(*selection) as lab:
        platforms = set()
        for host in lab["hosts"]:
            document = _client(lab, host).run_payload(payloads.render("exchange.detect", {}))
            result = _explain(document)
            assert result.known and result.platform == host["platform"], host["name"]
            assert result.relay_fix is None
            platforms.add(result.platform)
        assert platforms == {"exchange2013", "exchangese"}
