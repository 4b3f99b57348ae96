"""The patch level of 2013+ builds: pure, over a hand-made catalog and the shipped one."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from relayguard.exchange.catalog import load_catalog, parse_catalog, parse_version
from relayguard.exchange.patch_level import PatchPolicy, accepted_levels, patch_level

BEFORE_END = date(2025, 1, 1)
AFTER_END = date(2026, 12, 4)


def _row(version: str, level: str, update: str | None = None, kind: str | None = None) -> Any:
    kb = None if update is None else f"KB{version.replace('.', '')}"
    return {"version": version, "product": "exchange2019", "level": level, "update": update,
            "kind": kind, "released": None, "kb": kb, "source": "s"}  # fmt: skip


def small_catalog(supported: list[str]) -> Any:
    """2019 with three CUs: CU1 (one SU), CU2 (SU, HU, SU), CU3 (two SUs)."""
    return parse_catalog(
        {
            "schema": "relayguard.exchange-builds/1",
            "sources": {"s": {"title": "test"}},
            "products": {
                "exchange2019": {
                    "name": "Exchange Server 2019",
                    "major": 15,
                    "minor": 2,
                    "lifecycle": {"policy": "fixed", "extended_end": "2025-10-14", "source": "s"},
                    "supported_levels": supported,
                    "supported_levels_source": "s",
                }
            },
            "relay_fixes": [],
            "builds": [
                _row("15.2.100.1", "CU1"),
                _row("15.2.100.5", "CU1", "Jan1SU", "SU"),
                _row("15.2.200.1", "CU2"),
                _row("15.2.200.3", "CU2", "Feb2SU", "SU"),
                _row("15.2.200.4", "CU2", "Mar2HU", "HU"),
                _row("15.2.200.6", "CU2", "Apr2SU", "SU"),
                _row("15.2.300.2", "CU3"),
                _row("15.2.300.4", "CU3", "Apr2SU", "SU"),
                _row("15.2.300.7", "CU3", "May2SU", "SU"),
            ],
        }
    )


def level(version: str, policy: PatchPolicy = PatchPolicy.LATEST, **kw: Any) -> Any:
    catalog = kw.pop("catalog", None) or small_catalog(["CU2", "CU3"])
    result = patch_level(catalog, parse_version(version), policy=policy, **kw)
    assert result is not None
    return result


@pytest.mark.parametrize(
    ("version", "behind", "security", "compliant"),
    [
        ("15.2.300.2", 2, 2, False),  # CU3 without its SUs
        ("15.2.300.4", 1, 1, False),
        ("15.2.300.7", 0, 0, True),  # CU3 at its newest SU
    ],
)
def test_counts_the_updates_of_its_own_cu(
    version: str, behind: int, security: int, compliant: bool
) -> None:
    result = level(version)
    assert (result.level, result.updates_behind) == ("CU3", behind)
    assert result.security_updates_behind == security
    assert result.compliant is compliant
    assert result.required == "15.2.300.7"
    assert result.newest_for_level.update == "May2SU"
    assert result.newest_for_level.kb == "KB1523007"


def test_hotfix_updates_count_apart_from_security_updates() -> None:
    result = level("15.2.200.1", PatchPolicy.CU_N_MINUS_1)
    assert (result.updates_behind, result.security_updates_behind) == (3, 2)
    assert "behind by 2 SUs and 1 HU" in result.reasons[0]
    assert "15.2.200.6 (CU2 Apr2SU, KB1522006)" in result.reasons[0]


def test_cu_n_minus_1_is_refused_by_default_and_accepted_by_the_knob() -> None:
    strict = level("15.2.200.6")
    assert strict.compliant is False and strict.updates_behind == 0
    assert strict.accepted_levels == ("CU3",)
    assert strict.required == "15.2.300.7"  # the newest CU's newest update: a CU upgrade
    assert any("needs a CU upgrade" in r for r in strict.reasons)
    assert any("patch policy latest accepts only CU3" in r for r in strict.reasons)
    lenient = level("15.2.200.6", PatchPolicy.CU_N_MINUS_1)
    assert lenient.compliant is True and lenient.required == "15.2.200.6"
    assert lenient.accepted_levels == ("CU3", "CU2")


def test_cu_n_minus_1_at_an_older_update_is_still_behind() -> None:
    result = level("15.2.200.3", PatchPolicy.CU_N_MINUS_1)
    assert result.compliant is False and result.required == "15.2.200.6"
    assert result.updates_behind == 2


def test_an_unsupported_cu_is_never_compliant() -> None:
    """CU1 at its newest SU: outside both policies (N-2) and not a supported CU."""
    for policy in PatchPolicy:
        result = level("15.2.100.5", policy)
        assert result.compliant is False and result.level_supported is False
        assert result.required == "15.2.300.7"
        assert any("not a supported CU" in r for r in result.reasons)


def test_the_knob_accepts_only_supported_cus() -> None:
    catalog = small_catalog(["CU3"])  # CU2 no longer supported
    product = catalog.products["exchange2019"]
    assert accepted_levels(catalog, product, PatchPolicy.CU_N_MINUS_1) == ("CU3",)
    assert level("15.2.200.6", PatchPolicy.CU_N_MINUS_1, catalog=catalog).compliant is False


def test_product_lifecycle_is_reported_not_decided() -> None:
    before = level("15.2.300.7", as_of=BEFORE_END)
    after = level("15.2.300.7", as_of=AFTER_END)
    assert before.product_in_support is True and before.compliant is True
    assert after.product_in_support is False and after.compliant is True
    assert any("left extended support on 2025-10-14" in r for r in after.reasons)
    assert level("15.2.300.7").product_in_support is None  # no day given: not judged


def test_unknown_builds() -> None:
    newer = level("15.2.300.9")  # newer than every known CU3 update
    assert newer.compliant is None and "newer than every CU3 build" in newer.reasons[0]
    between = level("15.2.300.5")  # a build the catalog does not know, below May2SU
    assert between.compliant is False and between.updates_behind == 1
    nocu = level("15.2.250.1")  # no CU with build 250
    assert nocu.level is None and nocu.compliant is None and nocu.required is None


def test_exchange55_has_no_patch_level_here() -> None:
    assert patch_level(load_catalog(), parse_version("5.5.2650")) is None


# --- the shipped catalog ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "policy", "compliant", "required"),
    [
        # the lab's ex2019-compliant host: CU15 RTM build, none of the year's SUs
        ("15.2.1748.10", PatchPolicy.LATEST, False, "15.2.1748.53"),
        ("15.2.1748.53", PatchPolicy.LATEST, True, "15.2.1748.53"),
        ("15.2.1544.48", PatchPolicy.LATEST, False, "15.2.1748.53"),
        ("15.2.1544.48", PatchPolicy.CU_N_MINUS_1, True, "15.2.1544.48"),
        ("15.2.1258.39", PatchPolicy.CU_N_MINUS_1, False, "15.2.1748.53"),  # CU13: unsupported
        ("15.1.2507.6", PatchPolicy.LATEST, False, "15.1.2507.75"),
        ("15.0.1497.48", PatchPolicy.LATEST, True, "15.0.1497.48"),  # 2013 CU23 Mar23SU
        ("15.2.2562.17", PatchPolicy.LATEST, False, "15.2.2562.53"),
    ],
)
def test_shipped_catalog(version: str, policy: PatchPolicy, compliant: bool, required: str) -> None:
    result = patch_level(load_catalog(), parse_version(version), policy=policy, as_of=AFTER_END)
    assert result is not None
    assert (result.compliant, result.required) == (compliant, required)


def test_cu15_without_the_years_sus_is_found_behind() -> None:
    result = patch_level(load_catalog(), parse_version("15.2.1748.10"), as_of=AFTER_END)
    assert result is not None and result.level == "CU15"
    assert result.updates_behind == 12 and result.security_updates_behind == 9
    assert result.product_in_support is False  # 2019 left extended support on 2025-10-14
    assert result.to_dict()["newest_for_level"]["update"] == "Sep26SUv2"
