"""`relayguard build`: exit statuses 0 known / 3 unknown / 1 bad input, text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from relayguard.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["build", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_known_build_text(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "15.2.1544.4", "--as-of", "2025-06-01")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "15.2.1544.4: Exchange Server 2019 CU14"
    assert "  released: 2024-02-13" in lines
    assert "  supported: yes" in lines
    assert "  relay fix: not applicable" in lines


def test_known_build_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "15.1.2375.37", "--json", "--as-of", "2026-11-27")
    assert status == 0
    document = json.loads(out)
    assert document["product"] == "Exchange Server 2016"
    assert (document["level"], document["security_update"]) == ("CU22", "Nov22SU")
    assert document["released"] == "2022-11-08"
    assert document["supported"] is False and document["relay_fix"] is None
    assert "Get-ExchangeBuildNumber" in document["source"]


def test_exchange55_with_file_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "5.5.2448", "--msexcimc", "5.5.2650.1", "--json")
    assert status == 0
    document = json.loads(out)
    assert (document["level"], document["relay_fix"]) == ("SP2", True)
    status, out, _ = _run(capsys, "5.5.2448")
    assert "  relay fix: no" in out.splitlines()
    # A four-part 5.5 build the catalog does not list is matched on its first three parts.
    status, out, _ = _run(capsys, "5.5.2650.5")
    assert status == 3
    assert "  relay fix: yes" in out.splitlines()
    assert "first three parts are SP3" in out


def test_real_four_part_builds_name_their_service_pack(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What real 5.5 servers print (5.5.2650.21 is SP3 with the MS99-027 relay fix)."""
    status, out, _ = _run(capsys, "5.5.2650.21", "--json")
    document = json.loads(out)
    assert status == 0
    assert (document["known"], document["level"], document["relay_fix"]) == (True, "SP3", True)
    for version in ("5.5.2653.13", "5.5.2653.19", "5.5.2653.23"):
        _, out, _ = _run(capsys, version, "--json")
        assert (json.loads(out)["level"], json.loads(out)["relay_fix"]) == ("SP4", True)
    _, out, _ = _run(capsys, "5.5.2448.4", "--json")
    assert (json.loads(out)["level"], json.loads(out)["relay_fix"]) == ("SP2", False)
    # the file version decides over the service pack (KB Q237927: msexcimc.exe >= 5.5.2650.1)
    _, out, _ = _run(capsys, "5.5.2448.4", "--msexcimc", "5.5.2650.1", "--json")
    assert json.loads(out)["relay_fix"] is True
    _, out, _ = _run(capsys, "5.5.2650.21", "--msexcimc", "5.5.2650.0", "--json")
    assert json.loads(out)["relay_fix"] is False


def test_unknown_build_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "15.2.1544.50")
    assert status == 3
    assert out.splitlines()[0] == "15.2.1544.50: Exchange Server 2019, unknown build"
    assert "  nearest known builds: below 15.2.1544.48, above 15.2.1748.10" in out.splitlines()
    status, out, _ = _run(capsys, "8.0.685.25", "--json")
    assert status == 3 and json.loads(out)["product"] is None


@pytest.mark.parametrize(
    "argv",
    [
        ("15.2",),
        ("banana",),
        ("15.2.1544.4", "--as-of", "yesterday"),
        ("5.5.2653", "--msexcimc", "x"),
    ],
)
def test_bad_input_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    status, out, err = _run(capsys, *argv)
    assert status == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("relayguard build: ")
    assert "Traceback" not in err


def test_console_entry_point() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "relayguard.cli", "build", "not-a-version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "not a version number" in completed.stderr


def test_patch_level_text_says_how_far_behind(capsys: pytest.CaptureFixture[str]) -> None:
    """The lab's ex2019-compliant build: CU15 without any of its updates."""
    status, out, _ = _run(capsys, "15.2.1748.10", "--as-of", "2026-12-04")
    lines = out.splitlines()
    assert status == 0
    assert "  patch level: compliant no (policy latest)" in lines
    assert "  behind: 9 SU(s), 3 HU(s) of its CU" in lines
    assert any(line.startswith("  newest for CU15: 15.2.1748.53 (CU15 Sep26SUv2") for line in lines)


def test_patch_policy_n_minus_1(capsys: pytest.CaptureFixture[str]) -> None:
    _, strict, _ = _run(capsys, "15.2.1544.48", "--json")
    _, lenient, _ = _run(capsys, "15.2.1544.48", "--json", "--patch-policy", "cu_n_minus_1")
    assert json.loads(strict)["patch_level"]["compliant"] is False
    assert json.loads(strict)["patch_level"]["target"]["version"] == "15.2.1748.53"
    assert json.loads(lenient)["patch_level"]["compliant"] is True
    _, text, _ = _run(capsys, "15.2.1544.48")
    assert "  required: 15.2.1748.53 (CU15 Sep26SUv2, KB not in the catalog)" in text.splitlines()


def test_exchange55_has_no_patch_level_json(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "5.5.2650", "--json")
    assert json.loads(out)["patch_level"] is None
