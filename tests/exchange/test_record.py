"""relayguard.exchange.record: an Exchange host's record from its detect result — the patch
level (Exchange 5.5 by msexcimc.exe against KB Q237927's 5.5.2650.1 or the package that
applies; 2013+ by patch_level's judgement), the package chosen by version (not by text), the
planned changes with the patch, and the build's sentence."""

from __future__ import annotations

from typing import Any

import pytest

from relayguard.exchange.record import applicable_package, detect_record, unclosable, version_key

PLAN = {"changes": [{"control": "no-anonymous-relay", "target": "EX1\\Default", "before": "x"}]}


def modern(state: str | None, **build: Any) -> dict[str, Any]:
    return {
        "facts": {
            "platform": "exchange2019",
            "version": "15.2.1544.4",
            "build": {"product": "Exchange Server 2019", "level": "CU14", "source": "csv", **build},
        },
        "exposure": {"checks": [{"id": "rule-1", "result": "fail"}]},
        "patch": {"required": "15.2.1544.48", "state": state, "reasons": ["behind", "unsupported"]},
        "plan": PLAN,
    }


def exchange55(msexcimc: str | None, file_version: str | None = None) -> dict[str, Any]:
    return {
        "facts": {
            "platform": "exchange55",
            "version": "5.5.2448.0",
            "build": {"product": "Exchange Server 5.5", "level": "SP2", "msexcimc": msexcimc},
            "msexcimc": {"file_version": file_version},
        },
        "exposure": {"checks": []},
        "patch": {},
        "plan": {"changes": []},
    }


def package(file_version: str, applies_to: str, file: str = "/srv/p/fix.exe") -> dict[str, Any]:
    return {
        "file": file,
        "sha256": "AB" * 32,
        "file_version": file_version,
        "applies_to": applies_to,
    }


def test_a_modern_build_behind_gets_the_patch_change_and_the_package_to_install() -> None:
    packages = [package("15.2.1544.48", "15.2.1544", "/srv/p/Exchange2019-CU14-SU.msp")]
    record = detect_record(modern("missing"), packages, reboot=True, connector="Relay EX1")
    assert record["platform"] == "exchange2019" and record["connector"] == "Relay EX1"
    assert record["patch"] == {
        "required": "15.2.1544.48",
        "installed": "15.2.1544.4",
        "compliant": False,
    }
    assert [c["control"] for c in record["changes"]] == [
        "exchange-no-anonymous-relay",
        "exchange-patch",
    ]
    assert record["changes"][-1] == {
        "control": "exchange-patch",
        "target": "Exchange2019-CU14-SU.msp",
        "before": "15.2.1544.4",
        "after": "15.2.1544.48",
        "applied": False,
    }
    assert all(c["applied"] is False for c in record["changes"])
    assert record["exchange_patch"] == {
        "package_src": "/srv/p/Exchange2019-CU14-SU.msp",
        "sha256": "AB" * 32,
        "target_version": "15.2.1544.48",
        "reboot": True,
    }
    assert record["rules"] == [{"id": "rule-1", "result": "fail"}]
    assert record["build"]["explanation"] == "Exchange Server 2019 CU14 — behind; unsupported"


def test_a_modern_build_up_to_date_or_unknown_gets_no_patch() -> None:
    present = detect_record(modern("present", security_update="Sep26SUv2"))
    assert present["patch"]["compliant"] is True and present["exchange_patch"] is None
    assert [c["control"] for c in present["changes"]] == ["exchange-no-anonymous-relay"]
    assert present["build"]["explanation"].startswith("Exchange Server 2019 CU14 Sep26SUv2 — ")
    unknown = detect_record(modern("unknown"))
    assert unknown["patch"]["compliant"] is None
    assert [c["control"] for c in unknown["changes"]] == ["exchange-no-anonymous-relay"]


def test_a_missing_fix_without_a_package_is_a_change_that_names_none() -> None:
    record = detect_record(modern("missing"), [package("15.2.1748.53", "15.2.1748")])
    assert record["exchange_patch"] is None and record["package"] == {}
    assert record["changes"][-1]["target"] == "no package configured"


@pytest.mark.parametrize(
    ("msexcimc", "file_version", "compliant", "installed"),
    [
        ("5.5.2650.1", None, True, "5.5.2650.1"),  # the MS99-027 fix (KB Q237927)
        (None, "5.5.2448.8", False, "5.5.2448.8"),  # the binary's file version when no build
        (None, None, False, "0"),  # not read: not compliant
        ("5.5.2653.12", None, True, "5.5.2653.12"),  # SP4-level IMS
    ],
)
def test_exchange55_is_judged_by_msexcimc_against_5_5_2650_1(
    msexcimc: str | None, file_version: str | None, compliant: bool, installed: str
) -> None:
    record = detect_record(exchange55(msexcimc, file_version), connector="Relay EX55")
    assert record["patch"] == {
        "required": "5.5.2650.1",
        "installed": installed,
        "compliant": compliant,
    }
    assert record["connector"] is None  # 5.5 has no relay connector of relayguard's


def test_exchange55_with_a_package_needs_the_version_the_package_yields() -> None:
    packages = [package("5.5.2650.1", "5.5"), package("5.5.2653.12", "5.5.2448")]
    record = detect_record(exchange55("5.5.2650.1"), packages)
    # the SP4-level IMS (KB Q264330) over the MS99-027 hotfix alone
    assert record["patch"]["required"] == "5.5.2653.12" and record["patch"]["compliant"] is False
    assert record["exchange_patch"]["target_version"] == "5.5.2653.12"


def test_the_package_is_chosen_by_version_not_by_text() -> None:
    packages = [package("15.2.1544.9", "15.2.1544"), package("15.2.1544.48", "15.2.1544.4")]
    chosen = applicable_package(packages, "15.2.1544.4")
    assert chosen is not None and chosen["file_version"] == "15.2.1544.48"
    assert applicable_package(packages, "15.2.1748.24") is None
    assert version_key("15.02.1544.014") == (15, 2, 1544, 14)


def test_an_unknown_build_says_so() -> None:
    detected = modern("unknown")
    detected["facts"]["build"] = None
    assert detect_record(detected)["build"]["explanation"] == "unknown build  — behind; unsupported"


def test_a_missing_fix_no_configured_package_closes_is_named() -> None:
    build = {"version": "15.2.1544.4"}
    missing = {"required": "15.2.1544.48", "installed": "15.2.1544.4", "compliant": False}
    assert unclosable(missing, None, build) == (
        "15.2.1544.4 is below 15.2.1544.48 and relay_exchange_patch_packages has no package "
        "for build 15.2.1544.4"
    )
    short = {"file": "/srv/pkg/Exchange2019-KB1-x64-en.exe", "file_version": "15.2.1544.9"}
    assert unclosable(missing, short, build) == (
        "15.2.1544.4 is below 15.2.1544.48 and Exchange2019-KB1-x64-en.exe yields only 15.2.1544.9"
    )  # 9 < 48 as numbers, not as text
    enough = {**short, "file_version": "15.2.1544.48"}
    assert unclosable(missing, enough, build) is None
    assert unclosable({**missing, "compliant": None}, None, build) is None
    assert unclosable({**missing, "compliant": True}, None, build) is None
