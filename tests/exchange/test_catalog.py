"""The build catalog: every Exchange 5.5 service pack, CUs and SUs of each modern version,
unknown and malformed versions, and the data's own integrity."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import pytest

from relayguard.exchange import catalog as cat
from relayguard.exchange.catalog import InvalidVersionError, explain, load_catalog, parse_version

TODAY = date(2026, 11, 27)
CONTRACT_KEYS = {
    "version",
    "product",
    "level",
    "security_update",
    "released",
    "supported",
    "relay_fix",
    "source",
}


# --- Exchange 5.5 (KB Q158530, KB Q237927, KB Q264330) --------------------------------------


@pytest.mark.parametrize(
    ("build", "level", "relay_fix", "q264330"),
    [
        ("5.5.1960", "RTM", False, None),
        ("5.5.2232", "SP1", False, None),
        ("5.5.2448", "SP2", False, None),
        ("5.5.2650", "SP3", True, None),
        ("5.5.2653", "SP4", True, True),
    ],
)
def test_every_exchange55_service_pack(
    build: str, level: str, relay_fix: bool, q264330: bool | None
) -> None:
    result = explain(build, as_of=TODAY)
    assert result.known
    assert (result.product, result.platform, result.level) == (
        "Exchange Server 5.5",
        "exchange55",
        level,
    )
    assert result.security_update is None
    assert result.relay_fix is relay_fix
    assert result.supported is False  # extended support ended 2005-12-31
    assert "Q158530" in (result.source or "")
    fixes = {fix.id: fix.present for fix in result.fixes}
    assert fixes == {"MS99-027": relay_fix, "Q264330": q264330}


def test_exchange55_support_notes() -> None:
    # Inside its lifecycle 5.5 is still not reported supported: no level of it is listed.
    inside = explain("5.5.2653", as_of=date(2005, 12, 31))
    assert inside.supported is False
    assert "not a supported level" in inside.notes[0]
    after = explain("5.5.2653", as_of=date(2006, 1, 1))
    assert after.notes[0] == "Exchange Server 5.5 left extended support on 2005-12-31"


@pytest.mark.parametrize(
    ("build", "msexcimc", "expected"),
    [
        ("5.5.2448", "5.5.2448.0", False),
        ("5.5.2448", "5.5.2650.0", False),
        ("5.5.2448", "5.5.2650.1", True),  # the MS99-027 threshold itself (KB Q237927)
        ("5.5.2650", "5.5.2650.1", True),
        ("5.5.2650", "5.5.2650.10", True),
        ("5.5.2653", "5.5.2653.3", True),
        ("5.5.2653", "5.5.2448.7", False),  # the file decides, even on an SP4 build
    ],
)
def test_msexcimc_file_version_decides_the_relay_fix(
    build: str, msexcimc: str, expected: bool
) -> None:
    result = explain(build, as_of=TODAY, msexcimc=msexcimc)
    assert result.relay_fix is expected
    assert result.msexcimc == msexcimc
    assert result.fixes[0].basis.startswith("msexcimc.exe")


def test_secondary_threshold_claim_is_reported_not_applied() -> None:
    between = explain("5.5.2650", as_of=TODAY, msexcimc="5.5.2650.5")
    assert between.relay_fix is True
    assert any("5.5.2650.10" in note for note in between.notes)
    above = explain("5.5.2650", as_of=TODAY, msexcimc="5.5.2650.10")
    assert not any("5.5.2650.10" in note for note in above.notes)


def test_threshold_is_data() -> None:
    fix = next(f for f in load_catalog().relay_fixes if f.id == "MS99-027")
    assert str(fix.fixed_in_file_version) == "5.5.2650.1"
    assert [str(v) for v, _ in fix.alternative_versions] == ["5.5.2650.10"]
    assert fix.first_in_level == "SP3"


def test_unknown_exchange55_build_with_file_version() -> None:
    result = explain("5.5.2600", as_of=TODAY, msexcimc="5.5.2650.1")
    assert not result.known
    assert (result.nearest_below, result.nearest_above) == ("5.5.2448.4", "5.5.2650")
    assert result.relay_fix is True  # the file version proves it whatever the build
    without = explain("5.5.2600", as_of=TODAY)
    assert without.relay_fix is None


def test_msexcimc_is_ignored_for_modern_exchange() -> None:
    result = explain("15.2.1544.4", as_of=TODAY, msexcimc="5.5.2650.1")
    assert result.relay_fix is None
    assert result.msexcimc is None
    assert any("msexcimc.exe exists only on Exchange 5.5" in note for note in result.notes)


# --- Exchange 2013 / 2016 / 2019 / SE ------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "product", "level", "update", "released", "kb"),
    [
        # HealthChecker's examples (docs/sources.md#healthchecker-build-detection)
        ("15.0.1497.2", "Exchange Server 2013", "CU23", None, "2019-06-18", "KB4489622"),
        ("15.1.2507.6", "Exchange Server 2016", "CU23", None, "2022-04-20", "KB5011155"),
        ("15.2.1544.4", "Exchange Server 2019", "CU14", None, "2024-02-13", "KB5035606"),
        ("15.2.1748.10", "Exchange Server 2019", "CU15", None, "2025-02-10", "KB5042461"),
        # more CUs
        ("15.0.516.32", "Exchange Server 2013", "RTM", None, "2012-12-03", None),
        ("15.0.847.32", "Exchange Server 2013", "SP1", None, "2014-02-25", "KB2926248"),
        ("15.1.1713.5", "Exchange Server 2016", "CU12", None, "2019-02-12", "KB4471392"),
        ("15.2.221.12", "Exchange Server 2019", "RTM", None, "2018-10-22", None),
        ("15.2.1258.12", "Exchange Server 2019", "CU13", None, "2023-05-03", "KB5020999"),
        (
            "15.2.2562.17",
            "Exchange Server Subscription Edition",
            "RTM",
            None,
            "2025-07-01",
            "KB5047155",
        ),
        # security and hotfix updates
        ("15.0.1497.48", "Exchange Server 2013", "CU23", "Mar23SU", "2023-03-14", "KB5024296"),
        ("15.0.847.64", "Exchange Server 2013", "SP1", "Mar21SU", "2021-03-02", "KB5000871"),
        ("15.1.2375.37", "Exchange Server 2016", "CU22", "Nov22SU", "2022-11-08", "KB5019758"),
        ("15.1.2507.44", "Exchange Server 2016", "CU23", "Nov24SUv2", "2024-11-27", "KB5049233"),
        ("15.1.2507.39", "Exchange Server 2016", "CU23", "Apr24HU", "2024-04-23", "KB5037224"),
        ("15.2.1118.37", "Exchange Server 2019", "CU12", "Aug23SUv2", "2023-08-15", "KB5030524"),
        ("15.2.1748.43", "Exchange Server 2019", "CU15", "Feb26SU", "2026-02-10", "KB5074993"),
        (
            "15.2.2562.20",
            "Exchange Server Subscription Edition",
            "RTM",
            "Aug25SU",
            "2025-08-12",
            "KB5063224",
        ),
        # from HealthChecker only: no release date in the source, none invented
        ("15.0.1497.3", "Exchange Server 2013", "CU23", "Jul19SU", None, None),
        ("15.2.1544.48", "Exchange Server 2019", "CU14", "Sep26SUv2", None, None),
        ("15.2.2562.53", "Exchange Server Subscription Edition", "RTM", "Sep26SUv2", None, None),
    ],
)
def test_modern_builds(
    build: str, product: str, level: str, update: str | None, released: str | None, kb: str | None
) -> None:
    result = explain(build, as_of=TODAY)
    assert result.known
    assert (result.product, result.level, result.security_update) == (product, level, update)
    assert (result.released, result.kb) == (released, kb)
    assert result.relay_fix is None
    assert result.fixes == ()
    assert result.source


@pytest.mark.parametrize(
    ("version", "platform"),
    [
        ("15.0.1497.2", "exchange2013"),
        ("15.1.2507.6", "exchange2016"),
        ("15.2.2561.0", "exchange2019"),
        ("15.2.2562.0", "exchangese"),
        ("15.2.9999.1", "exchangese"),
    ],
)
def test_product_from_the_version_scheme(version: str, platform: str) -> None:
    assert explain(version, as_of=TODAY).platform == platform


@pytest.mark.parametrize(
    ("build", "as_of", "supported"),
    [
        ("15.2.1544.4", date(2025, 6, 1), True),  # CU14, inside the lifecycle
        ("15.2.1748.43", date(2025, 10, 14), True),  # last day of extended support
        ("15.2.1748.43", date(2025, 10, 15), False),
        ("15.2.1258.12", date(2024, 6, 1), False),  # CU13: not a supported CU any more
        ("15.1.2507.6", date(2024, 1, 1), True),
        ("15.1.2375.37", date(2024, 1, 1), False),  # CU22
        ("15.0.1497.48", date(2023, 4, 11), True),
        ("15.0.1497.48", date(2023, 4, 12), False),
        ("15.2.2562.17", TODAY, True),  # SE: Modern Lifecycle, RTM is current
    ],
)
def test_support_depends_on_lifecycle_and_level(build: str, as_of: date, supported: bool) -> None:
    assert explain(build, as_of=as_of).supported is supported


def test_conflicting_sources_are_both_kept_and_flagged() -> None:
    ours = explain("15.1.1415.10", as_of=TODAY)
    theirs = explain("15.1.1415.8", as_of=TODAY)
    assert ours.security_update == theirs.security_update == "Mar21SU"
    assert any("15.1.1415.8" in note for note in ours.notes)
    assert any("15.1.1415.10" in note for note in theirs.notes)


# --- unknown and malformed -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "below", "above"),
    [
        ("15.2.1544.50", "15.2.1544.48", "15.2.1748.10"),
        ("15.2.1545.0", "15.2.1544.48", "15.2.1748.10"),
        ("15.0.1.0", None, "15.0.516.32"),
        ("15.1.9999.0", "15.1.2507.75", None),
        ("5.5.1000", None, "5.5.1960"),
    ],
)
def test_unknown_builds_report_the_nearest_known(
    version: str, below: str | None, above: str | None
) -> None:
    result = explain(version, as_of=TODAY)
    assert not result.known
    assert result.product is not None
    assert result.level is None and result.security_update is None and result.released is None
    assert (result.nearest_below, result.nearest_above) == (below, above)
    assert result.to_dict()["nearest"] == {"below": below, "above": above}


def test_unknown_build_of_an_ended_product_is_unsupported_anyway() -> None:
    assert explain("15.0.1497.99", as_of=TODAY).supported is False
    assert explain("15.2.2562.99", as_of=TODAY).supported is None  # SE: cannot be judged


@pytest.mark.parametrize("version", ["8.0.685.25", "14.3.123.4", "15.3.0.0", "16.0.1.1", "1.2.3"])
def test_versions_outside_the_catalog_products(version: str) -> None:
    result = explain(version, as_of=TODAY)
    assert not result.known
    assert result.product is None and result.supported is None and result.relay_fix is None
    assert result.to_dict()["nearest"] == {"below": None, "above": None}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "15",
        "15.2",
        "15.2.x.4",
        "15.2.1544.4.1",
        "15.2.99999.0",
        "15.2.1544.-4",
        "v15.2.1544.4",
        "15.2.1544.4; Remove-Item C:\\",
        "Version 15.2 (Build 1544)",
        "15..1544.4",
        "١٥.٢.١٥٤٤.٤",  # Arabic-Indic digits are digits to str.isdigit, not to a version
    ],
)
def test_malformed_versions_are_refused(text: str) -> None:
    with pytest.raises(InvalidVersionError):
        parse_version(text)
    with pytest.raises(InvalidVersionError):
        explain(text, as_of=TODAY)


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("15.02.1544.004", "15.2.1544.4"),
        (" 15.2.1544.4\n", "15.2.1544.4"),
        ("Version 15.2 (Build 1544.4)", "15.2.1544.4"),
        ("5.5.2653", "5.5.2653"),
        ("5.5.2653.0", "5.5.2653.0"),
    ],
)
def test_version_forms(text: str, normal: str) -> None:
    assert str(parse_version(text)) == normal


def test_zero_revision_matches_a_three_part_build() -> None:
    assert explain("5.5.2653.0", as_of=TODAY).level == "SP4"


# --- the contract and the data -------------------------------------------------------------


def test_to_dict_carries_the_contract_fields() -> None:
    document: dict[str, Any] = explain("15.2.1544.4", as_of=TODAY).to_dict()
    assert document.keys() >= CONTRACT_KEYS
    assert document["relay_fix"] is None and document["level"] == "CU14"


def test_catalog_integrity() -> None:
    catalog = load_catalog()
    levels = {(r.product, r.level) for r in catalog.builds if r.update is None}
    for row in catalog.builds:
        assert row.source in catalog.sources
        assert catalog.products[row.product].matches(row.version)
        if row.update is not None:
            assert (row.product, row.level) in levels, row
            assert row.kind in {"SU", "HU"}
        if row.released is not None:
            date.fromisoformat(row.released if len(row.released) == 10 else row.released + "-01")
    for product in catalog.products.values():
        for level in product.supported_levels:
            assert (product.id, level) in levels
    counts = Counter(row.product for row in catalog.builds)
    assert counts["exchange55"] == 11  # KB Q158530 three-part rows, six four-part
    assert counts["exchange2013"] >= 50
    assert counts["exchange2016"] >= 100
    assert counts["exchange2019"] >= 100
    assert counts["exchangese"] >= 10
    keys = [row.version.key for row in catalog.builds]
    assert keys == sorted(keys) and len(keys) == len(set(keys))


def _minimal() -> dict[str, Any]:
    return {
        "schema": cat.CATALOG_SCHEMA,
        "sources": {"s": {"title": "t", "url": None}},
        "products": {
            "exchange2019": {
                "name": "Exchange Server 2019",
                "major": 15,
                "minor": 2,
                "build_below": 2562,
                "lifecycle": {"policy": "fixed", "extended_end": "2025-10-14", "source": "s"},
                "supported_levels": [],
                "supported_levels_source": "s",
            }
        },
        "relay_fixes": [],
        "builds": [
            {"version": "15.2.1544.4", "product": "exchange2019", "level": "CU14", "source": "s"}
        ],
    }


def test_parse_catalog_accepts_minimal_data() -> None:
    assert len(cat.parse_catalog(_minimal()).builds) == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="other/1"), "schema"),
        (lambda d: d["builds"][0].update(source="nowhere"), "unknown source"),
        (lambda d: d["builds"].append(dict(d["builds"][0])), "duplicate"),
        (lambda d: d["builds"][0].update(version="15.1.2507.6"), "does not belong"),
        (lambda d: d["builds"][0].update(released="Feb 2024"), "released"),
        (lambda d: d["builds"][0].pop("level"), "missing 'level'"),
    ],
)
def test_parse_catalog_refuses_bad_data(mutate: Any, message: str) -> None:
    data = _minimal()
    mutate(data)
    with pytest.raises(cat.CatalogError, match=message):
        cat.parse_catalog(data)


# --- corrections and unverified values (docs/exchange.md#unverified-catalog-values) ---------

CORRECTED_KB_ROWS = ("15.2.1544.25", "15.2.1544.27", "15.2.1748.24", "15.2.1748.26")


@pytest.mark.parametrize("version", CORRECTED_KB_ROWS)
def test_kbs_microsoft_corrected_are_not_kept(version: str) -> None:
    """The CSV gave these 2019 HU rows the KB of another product's row (KB5050674 for every
    Apr25HU, KB5057653 for every May25HU); Microsoft corrected it, and the corrected number
    is not confirmed here: the row carries no KB rather than a wrong one, and says so."""
    row = load_catalog().by_version[parse_version(version).key]
    assert row.kb is None
    assert row.note is not None and "unverified" in row.note


def test_no_kb_is_shared_by_two_builds_of_one_level() -> None:
    """An update KB names one package for one CU: two updates of the same CU never share it."""
    seen: Counter[tuple[str, str, str]] = Counter(
        (row.product, row.level, row.kb)
        for row in load_catalog().builds
        if row.kb is not None and row.update is not None
    )
    assert [key for key, count in seen.items() if count > 1] == []


def test_healthchecker_only_rows_have_no_invented_dates_or_kbs() -> None:
    rows = [r for r in load_catalog().builds if r.source == "healthchecker"]
    assert rows, "HealthChecker-only rows exist (Jun26SU and later)"
    for row in rows:
        assert row.kb is None and row.released is None, row.version


@pytest.mark.parametrize(
    ("product", "level", "newest"),
    [
        ("exchange2019", "CU15", "15.2.1748.53"),
        ("exchange2019", "CU14", "15.2.1544.48"),
        ("exchange2016", "CU23", "15.1.2507.75"),
        ("exchangese", "RTM", "15.2.2562.53"),
    ],
)
def test_newest_update_of_each_supported_cu(product: str, level: str, newest: str) -> None:
    """HealthChecker's dictionary (Sep26SUv2 is the newest of each supported CU)."""
    rows = [r for r in load_catalog().builds if r.product == product and r.level == level]
    assert str(max(rows, key=lambda r: r.version.key).version) == newest
