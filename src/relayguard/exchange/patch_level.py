"""Patch level of Exchange 2013 and later: the installed build against the catalog. Pure.

A security update (SU) or hotfix update (HU) applies only to its own cumulative update (CU):
all builds of a CU share major.minor.build (15.2.1748.x is 2019 CU15) and each update is
cumulative over the earlier ones of its CU (CSS-Exchange HealthChecker's build dictionary,
docs/sources.md#healthchecker-build-detection). So a server is judged by

- how many updates of its own CU the catalog knows above the installed build ("behind by N"),
  and which is the newest (build, update, KB);
- whether its CU is a supported one (the catalog's `supported_levels`, from HealthChecker);
- whether the policy accepts its CU: `latest` only the product's newest CU, `cu_n_minus_1`
  the newest or the one before it — in both cases only supported CUs;
- whether the product is inside its lifecycle on the day asked about. That is reported, never
  decided by an update: a product past its extended support is a migration, not a patch
  (docs/exchange.md#patch-level).

Compliant: the CU is accepted and the build is at (or above) the newest update of that CU.
The target (`required`) is that newest update, or, when the CU is not accepted, the newest
update of the newest accepted CU (an SU package cannot get there: it needs a CU upgrade).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from relayguard.exchange.catalog import BuildRow, BuildVersion, Catalog, Product


class PatchPolicy(StrEnum):
    LATEST = "latest"  # only the newest CU, at its newest update
    CU_N_MINUS_1 = "cu_n_minus_1"  # the newest CU or the one before it, at its newest update


# How many of the newest CUs a policy accepts.
_ACCEPTED_CUS = {PatchPolicy.LATEST: 1, PatchPolicy.CU_N_MINUS_1: 2}


@dataclass(frozen=True)
class BuildRef:
    """One catalog build, as the patch level names it."""

    version: str
    level: str
    update: str | None
    kb: str | None
    released: str | None

    @classmethod
    def of(cls, row: BuildRow) -> BuildRef:
        return cls(str(row.version), row.level, row.update, row.kb, row.released)

    @property
    def label(self) -> str:
        name = self.level if self.update is None else f"{self.level} {self.update}"
        return f"{self.version} ({name}, {self.kb or 'KB not in the catalog'})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "level": self.level,
            "update": self.update,
            "kb": self.kb,
            "released": self.released,
        }


@dataclass(frozen=True)
class PatchLevel:
    """The patch level of one build under one policy; `to_dict` is JSON-ready."""

    installed: str
    product: str  # the catalog's product id, e.g. "exchange2019"
    policy: PatchPolicy
    level: str | None  # the installed CU, None when its CU is not in the catalog
    product_in_support: bool | None  # None: no day to judge the lifecycle on
    level_supported: bool | None
    accepted_levels: tuple[str, ...]
    newest_for_level: BuildRef | None  # the newest update of the installed CU
    newest: BuildRef | None  # the newest build of the product's newest CU
    target: BuildRef | None  # what compliance requires
    updates_behind: int | None  # SUs and HUs of the installed CU above the installed build
    security_updates_behind: int | None  # of which SUs
    compliant: bool | None
    reasons: tuple[str, ...]

    @property
    def required(self) -> str | None:
        return None if self.target is None else self.target.version

    def to_dict(self) -> dict[str, Any]:
        def ref(value: BuildRef | None) -> dict[str, Any] | None:
            return None if value is None else value.to_dict()

        return {
            "installed": self.installed,
            "product": self.product,
            "policy": self.policy.value,
            "level": self.level,
            "product_in_support": self.product_in_support,
            "level_supported": self.level_supported,
            "accepted_levels": list(self.accepted_levels),
            "newest_for_level": ref(self.newest_for_level),
            "newest": ref(self.newest),
            "target": ref(self.target),
            "updates_behind": self.updates_behind,
            "security_updates_behind": self.security_updates_behind,
            "compliant": self.compliant,
            "reasons": list(self.reasons),
        }


def level_rows(catalog: Catalog, product: Product) -> list[BuildRow]:
    """The product's CU (or SP/RTM) builds, oldest first."""
    return [r for r in catalog.builds if r.product == product.id and r.update is None]


def newest_of_level(catalog: Catalog, product: Product, level: str) -> BuildRow | None:
    rows = [r for r in catalog.builds if r.product == product.id and r.level == level]
    return max(rows, key=lambda r: r.version.key, default=None)


def accepted_levels(catalog: Catalog, product: Product, policy: PatchPolicy) -> tuple[str, ...]:
    """The CUs the policy accepts, newest first: the newest N, of those only supported ones."""
    newest_first = [r.level for r in reversed(level_rows(catalog, product))]
    return tuple(
        level
        for level in newest_first[: _ACCEPTED_CUS[policy]]
        if level in product.supported_levels
    )


def _level_of(catalog: Catalog, product: Product, version: BuildVersion) -> str | None:
    """The CU a build belongs to: the level build with the same major.minor.build."""
    for row in level_rows(catalog, product):
        if row.version.key[:3] == version.key[:3]:
            return row.level
    return None


def _behind(
    catalog: Catalog, product: Product, level: str, version: BuildVersion
) -> tuple[int, int]:
    above = [
        r
        for r in catalog.builds
        if r.product == product.id
        and r.level == level
        and r.update is not None
        and r.version.key > version.key
    ]
    return len(above), sum(1 for r in above if r.kind == "SU")


def patch_level(
    catalog: Catalog,
    version: BuildVersion,
    *,
    policy: PatchPolicy = PatchPolicy.LATEST,
    as_of: date | None = None,
) -> PatchLevel | None:
    """The patch level of a 2013-or-later build; None for Exchange 5.5 or a non-Exchange
    version (5.5's fix level is msexcimc.exe's file version: `catalog.explain`)."""
    product = catalog.product_of(version)
    if product is None or product.major < 15:
        return None
    in_support = None if as_of is None else product.lifecycle.in_support(as_of)
    accepted = accepted_levels(catalog, product, policy)
    newest_level = level_rows(catalog, product)[-1].level if level_rows(catalog, product) else None
    newest_row = None if newest_level is None else newest_of_level(catalog, product, newest_level)
    level = _level_of(catalog, product, version)
    if level is None:
        return _unknown_level(product, version, policy, in_support, accepted, newest_row, as_of)
    own_newest = newest_of_level(catalog, product, level)
    assert own_newest is not None  # the level row itself is one
    behind, security_behind = _behind(catalog, product, level, version)
    at_newest = version.key >= own_newest.version.key
    target_row = own_newest if level in accepted else _first_newest(catalog, product, accepted)
    compliant: bool | None = level in accepted and at_newest
    beyond = version.key > own_newest.version.key and version.key not in catalog.by_version
    if compliant and beyond:
        compliant = None  # newer than every update the catalog knows: reported, not guessed
    result = PatchLevel(
        installed=str(version),
        product=product.id,
        policy=policy,
        level=level,
        product_in_support=in_support,
        level_supported=level in product.supported_levels,
        accepted_levels=accepted,
        newest_for_level=BuildRef.of(own_newest),
        newest=None if newest_row is None else BuildRef.of(newest_row),
        target=None if target_row is None else BuildRef.of(target_row),
        updates_behind=behind,
        security_updates_behind=security_behind,
        compliant=compliant,
        reasons=(),
    )
    return _with_reasons(result, product, as_of)


def _first_newest(catalog: Catalog, product: Product, accepted: tuple[str, ...]) -> BuildRow | None:
    return None if not accepted else newest_of_level(catalog, product, accepted[0])


def _unknown_level(
    product: Product,
    version: BuildVersion,
    policy: PatchPolicy,
    in_support: bool | None,
    accepted: tuple[str, ...],
    newest_row: BuildRow | None,
    as_of: date | None,
) -> PatchLevel:
    result = PatchLevel(
        installed=str(version),
        product=product.id,
        policy=policy,
        level=None,
        product_in_support=in_support,
        level_supported=None,
        accepted_levels=accepted,
        newest_for_level=None,
        newest=None if newest_row is None else BuildRef.of(newest_row),
        target=None,
        updates_behind=None,
        security_updates_behind=None,
        compliant=None,
        reasons=(
            f"{version}: no {product.name} CU with build {version.major}.{version.minor}."
            f"{version.build} is in the catalog; its patch level is unknown",
        ),
    )
    return _with_reasons(result, product, as_of)


def _with_reasons(result: PatchLevel, product: Product, as_of: date | None) -> PatchLevel:
    reasons = list(result.reasons)
    own = result.newest_for_level
    if result.level is not None and own is not None:
        if result.updates_behind:
            reasons.append(
                f"{product.name} {result.level} at {result.installed} is behind by "
                f"{_count(result.security_updates_behind or 0, 'SU')}"
                + _hus(result.updates_behind - (result.security_updates_behind or 0))
                + f"; newest for {result.level}: {own.label}"
            )
        elif result.installed != own.version and result.compliant is None:
            reasons.append(
                f"{result.installed} is newer than every {result.level} build in the catalog "
                f"(newest known: {own.label}); update builds.yml to judge it"
            )
        else:
            reasons.append(
                f"{product.name} {result.level} at {result.installed}: the newest update of "
                f"{result.level} in the catalog ({own.label})"
            )
        if not result.level_supported:
            levels = ", ".join(sorted(product.supported_levels)) or "none"
            reasons.append(f"{result.level} is not a supported CU (supported: {levels})")
        elif result.level not in result.accepted_levels:
            reasons.append(
                f"{result.level} is not the newest CU and patch policy {result.policy.value} "
                f"accepts only {', '.join(result.accepted_levels)}"
            )
        if result.target is not None and result.target.version != own.version:
            reasons.append(f"required: {result.target.label}, which needs a CU upgrade")
    if result.product_in_support is False:
        reasons.append(
            f"{product.name} left extended support on {product.lifecycle.extended_end} "
            f"(as of {as_of}): no update fixes that; plan the move to a supported product"
        )
    return PatchLevel(**{**result.__dict__, "reasons": tuple(reasons)})


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _hus(n: int) -> str:
    return "" if n == 0 else f" and {_count(n, 'HU')}"
