"""One platform vocabulary: the roles' tables and the module option are relayguard.vocabulary's.

The roles cannot import Python, so roles/relay/defaults/main.yml keeps the tables as YAML; these
tests fail the moment either side gains, loses or renames a row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from support.collection_specs import RELAY_SPEC

from relayguard.exchange.relay_task import generation
from relayguard.validate import InputError
from relayguard.vocabulary import (
    GROUP_FAMILY,
    GROUP_PLATFORM,
    PLATFORM_FAMILY,
    ExchangeGeneration,
    Family,
    Platform,
    UnknownPlatform,
    exchange_generation,
    family_of,
    inventory_group,
    is_legacy_exchange,
)

REPO = Path(__file__).resolve().parents[2]


def _role_defaults() -> dict[str, Any]:
    text = (REPO / "roles" / "relay" / "defaults" / "main.yml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def test_role_group_families_are_the_vocabulary() -> None:
    assert _role_defaults()["relay_group_families"] == {g: f.value for g, f in GROUP_FAMILY.items()}


def test_role_group_platforms_are_the_vocabulary() -> None:
    defaults = _role_defaults()["relay_group_platforms"]
    assert defaults == {g: p.value for g, p in GROUP_PLATFORM.items()}


def test_role_platform_families_are_the_vocabulary() -> None:
    defaults = _role_defaults()["relay_platform_families"]
    assert defaults == {p.value: f.value for p, f in PLATFORM_FAMILY.items()}


def test_every_platform_but_unknown_has_a_family_and_a_group() -> None:
    assert set(PLATFORM_FAMILY) == set(Platform) - {Platform.UNKNOWN}
    assert set(GROUP_FAMILY.values()) == set(Family)
    for platform, family in PLATFORM_FAMILY.items():
        assert GROUP_FAMILY[inventory_group(platform)] is family


@pytest.mark.parametrize(
    ("platform", "family", "group"),
    [
        (Platform.EXCHANGE55, Family.EXCHANGE, "exchange55"),
        (Platform.EXCHANGE2016, Family.EXCHANGE, "exchange_modern"),
        ("exchangese", Family.EXCHANGE, "exchange_modern"),
        (Platform.POSTFIX, Family.POSTFIX, "postfix"),
        ("exim", Family.EXIM, "exim"),
        (Platform.SENDMAIL, Family.SENDMAIL, "sendmail"),
    ],
)
def test_family_and_group_of_a_platform(platform: str, family: Family, group: str) -> None:
    assert family_of(platform) is family
    assert inventory_group(platform) == group


@pytest.mark.parametrize("platform", [Platform.UNKNOWN, "qmail", "modern", ""])
def test_no_family_for_an_unknown_platform(platform: str) -> None:
    with pytest.raises(UnknownPlatform):
        family_of(platform)


def test_the_exchange_generations() -> None:
    assert exchange_generation(Platform.EXCHANGE55) is ExchangeGeneration.EXCHANGE55
    assert is_legacy_exchange(Platform.EXCHANGE55)
    for platform in (p for p, f in PLATFORM_FAMILY.items() if f is Family.EXCHANGE):
        if platform is not Platform.EXCHANGE55:
            assert exchange_generation(platform) is ExchangeGeneration.MODERN
            assert not is_legacy_exchange(platform)
    with pytest.raises(UnknownPlatform):
        exchange_generation(Platform.POSTFIX)


def test_the_module_platform_option_keeps_the_words_users_pass() -> None:
    """exchange_relay's `platform: auto|exchange55|modern` (plugins/module_utils cannot import
    the vocabulary: this holds its choices to the vocabulary's words)."""
    assert RELAY_SPEC["platform"]["choices"] == ["auto", *ExchangeGeneration]
    assert [g.value for g in ExchangeGeneration] == ["exchange55", "modern"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", None), ("exchange55", ExchangeGeneration.EXCHANGE55), ("modern", "modern")],
)
def test_the_platform_option_read_by_the_library(value: str, expected: str | None) -> None:
    assert generation(value) == expected


@pytest.mark.parametrize("value", ["exchange2019", "MODERN", "", 55, None])
def test_a_platform_option_outside_the_vocabulary_is_refused(value: object) -> None:
    with pytest.raises(InputError, match=r"^platform: "):
        generation(value)
