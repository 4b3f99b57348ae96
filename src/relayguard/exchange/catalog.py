"""Exchange build catalog: which product, level and update a version number is, from data.

The rows live in `builds.yml`, each naming its source; this module parses, looks up and
explains, and holds no build number of its own. An unknown build is reported as unknown
together with the nearest known builds of its product, never guessed.

`relay_fix` semantics: for Exchange 5.5, whether the MS99-027 IMS fix (KB Q237927) is in,
judged by msexcimc.exe's file version when one is given, else by the build (the service pack
that first contains it); for Exchange 2013 and later it is None, because relay there is a
matter of configuration, not of a code defect a build number could prove fixed.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from relayguard.validate import quoted
from relayguard.vocabulary import Platform

CATALOG_SCHEMA = "relayguard.exchange-builds/1"
DEFAULT_CATALOG_PATH = Path(__file__).with_name("builds.yml")

# File and product versions are four 16-bit fields (VS_FIXEDFILEINFO), so five digits at most.
_DOTTED = re.compile(r"^(\d{1,5})\.(\d{1,5})\.(\d{1,5})(?:\.(\d{1,5}))?$", re.ASCII)
# Get-ExchangeServer's AdminDisplayVersion, e.g. "Version 15.2 (Build 1544.4)".
_ADMIN_DISPLAY = re.compile(
    r"^Version\s+(\d{1,5})\.(\d{1,5})\s+\(Build\s+(\d{1,5})\.(\d{1,5})\)$", re.ASCII
)
_FIELD_MAX = 65535


class InvalidVersionError(ValueError):
    """The text is not an Exchange version number."""


class CatalogError(ValueError):
    """builds.yml does not have the shape this module expects."""


@dataclass(frozen=True)
class BuildVersion:
    """A dotted version: major.minor.build with an optional revision."""

    major: int
    minor: int
    build: int
    revision: int | None = None

    @property
    def key(self) -> tuple[int, int, int, int]:
        """Comparison key; a missing revision counts as 0 (5.5.2653 is 5.5.2653.0)."""
        return (self.major, self.minor, self.build, self.revision or 0)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.build}"
        return base if self.revision is None else f"{base}.{self.revision}"


def parse_version(text: str) -> BuildVersion:
    """Parse "15.2.1544.4", "15.02.1544.004", "5.5.2653" or "Version 15.2 (Build 1544.4)"."""
    stripped = text.strip()
    match = _DOTTED.match(stripped) or _ADMIN_DISPLAY.match(stripped)
    if match is None:
        raise InvalidVersionError(
            f"not a version number: {quoted(text)} (expected e.g. 15.2.1544.4 or 5.5.2653)"
        )
    fields = [int(part) for part in match.groups() if part is not None]
    if any(value > _FIELD_MAX for value in fields):
        raise InvalidVersionError(f"not a version number: {quoted(text)} (a field exceeds 65535)")
    revision = fields[3] if len(fields) == 4 else None
    return BuildVersion(fields[0], fields[1], fields[2], revision)


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    url: str | None
    note: str | None

    def cite(self) -> str:
        return self.title if self.url is None else f"{self.title} <{self.url}>"


@dataclass(frozen=True)
class Lifecycle:
    policy: str  # "fixed" (end dates) or "modern" (supported while kept current)
    mainstream_end: date | None
    extended_end: date | None
    source: str

    def in_support(self, as_of: date) -> bool:
        return self.extended_end is None or as_of <= self.extended_end


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    platform: Platform
    major: int
    minor: int
    build_from: int | None
    build_below: int | None
    lifecycle: Lifecycle
    supported_levels: frozenset[str]
    supported_levels_source: str

    def matches(self, version: BuildVersion) -> bool:
        if (version.major, version.minor) != (self.major, self.minor):
            return False
        if self.build_from is not None and version.build < self.build_from:
            return False
        return self.build_below is None or version.build < self.build_below


@dataclass(frozen=True)
class BuildRow:
    version: BuildVersion
    product: str
    level: str
    update: str | None  # e.g. "Mar21SU", "Apr24HU"
    kind: str | None  # "SU" (security update) or "HU" (hotfix update)
    released: str | None  # ISO date, or ISO month when the source gives only a month
    kb: str | None
    source: str
    released_source: str | None
    url: str | None
    note: str | None


@dataclass(frozen=True)
class RelayFix:
    id: str
    kb: str
    product: str
    title: str
    file: str | None
    fixed_in_file_version: BuildVersion | None
    first_in_level: str
    decides_relay_fix: bool
    source: str
    alternative_versions: tuple[tuple[BuildVersion, str], ...]


@dataclass(frozen=True)
class Catalog:
    sources: Mapping[str, Source]
    products: Mapping[str, Product]
    builds: tuple[BuildRow, ...]  # sorted by version
    relay_fixes: tuple[RelayFix, ...]
    by_version: Mapping[tuple[int, int, int, int], BuildRow] = field(repr=False)

    def product_of(self, version: BuildVersion) -> Product | None:
        for product in self.products.values():
            if product.matches(version):
                return product
        return None

    def level_row(self, product_id: str, level: str) -> BuildRow | None:
        """The row of a level itself (the CU or SP build, without an update)."""
        for row in self.builds:
            if row.product == product_id and row.level == level and row.update is None:
                return row
        return None


# --- loading (validation of data, no I/O except in load_catalog) -------------------------


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise CatalogError(f"{where}: missing {key!r}")
    return mapping[key]


def _optional_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CatalogError(f"{where}: expected a string, got {value!r}")
    return value


def _date(value: Any, where: str) -> date | None:
    text = _optional_str(value, where)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CatalogError(f"{where}: not an ISO date: {text!r}") from exc


_RELEASED = re.compile(r"^\d{4}-\d{2}(-\d{2})?$", re.ASCII)


def _source_key(value: Any, sources: Mapping[str, Source], where: str) -> str:
    if not isinstance(value, str) or value not in sources:
        raise CatalogError(f"{where}: unknown source {value!r}")
    return value


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """Validate the loaded YAML and build the catalog; raises CatalogError on bad data."""
    if data.get("schema") != CATALOG_SCHEMA:
        raise CatalogError(f"schema must be {CATALOG_SCHEMA!r}, got {data.get('schema')!r}")
    sources = {
        key: Source(
            key=key,
            title=str(_require(raw, "title", f"sources.{key}")),
            url=_optional_str(raw.get("url"), f"sources.{key}.url"),
            note=_optional_str(raw.get("note"), f"sources.{key}.note"),
        )
        for key, raw in dict(_require(data, "sources", "catalog")).items()
    }
    products: dict[str, Product] = {}
    for key, raw in dict(_require(data, "products", "catalog")).items():
        where = f"products.{key}"
        life = _require(raw, "lifecycle", where)
        products[key] = Product(
            id=key,
            name=str(_require(raw, "name", where)),
            platform=Platform(key),
            major=int(_require(raw, "major", where)),
            minor=int(_require(raw, "minor", where)),
            build_from=raw.get("build_from"),
            build_below=raw.get("build_below"),
            lifecycle=Lifecycle(
                policy=str(_require(life, "policy", where)),
                mainstream_end=_date(life.get("mainstream_end"), f"{where}.mainstream_end"),
                extended_end=_date(life.get("extended_end"), f"{where}.extended_end"),
                source=_source_key(life.get("source"), sources, f"{where}.lifecycle"),
            ),
            supported_levels=frozenset(str(x) for x in raw.get("supported_levels") or ()),
            supported_levels_source=_source_key(raw.get("supported_levels_source"), sources, where),
        )
    rows: list[BuildRow] = []
    by_version: dict[tuple[int, int, int, int], BuildRow] = {}
    for index, raw in enumerate(_require(data, "builds", "catalog")):
        where = f"builds[{index}]"
        version = parse_version(str(_require(raw, "version", where)))
        product = str(_require(raw, "product", where))
        if product not in products or not products[product].matches(version):
            raise CatalogError(f"{where}: {version} does not belong to product {product!r}")
        released = _optional_str(raw.get("released"), f"{where}.released")
        if released is not None and not _RELEASED.match(released):
            raise CatalogError(f"{where}: released must be YYYY-MM or YYYY-MM-DD: {released!r}")
        released_source = raw.get("released_source")
        row = BuildRow(
            version=version,
            product=product,
            level=str(_require(raw, "level", where)),
            update=_optional_str(raw.get("update"), f"{where}.update"),
            kind=_optional_str(raw.get("kind"), f"{where}.kind"),
            released=released,
            kb=_optional_str(raw.get("kb"), f"{where}.kb"),
            source=_source_key(raw.get("source"), sources, where),
            released_source=None
            if released_source is None
            else _source_key(released_source, sources, f"{where}.released_source"),
            url=_optional_str(raw.get("url"), f"{where}.url"),
            note=_optional_str(raw.get("note"), f"{where}.note"),
        )
        if version.key in by_version:
            raise CatalogError(f"{where}: duplicate build {version}")
        by_version[version.key] = row
        rows.append(row)
    rows.sort(key=lambda r: r.version.key)
    fixes = tuple(
        _parse_fix(raw, index, sources)
        for index, raw in enumerate(_require(data, "relay_fixes", "catalog"))
    )
    return Catalog(
        sources=sources,
        products=products,
        builds=tuple(rows),
        relay_fixes=fixes,
        by_version=by_version,
    )


def _parse_fix(raw: Mapping[str, Any], index: int, sources: Mapping[str, Source]) -> RelayFix:
    where = f"relay_fixes[{index}]"
    threshold = raw.get("fixed_in_file_version")
    alternatives = tuple(
        (
            parse_version(str(_require(alt, "fixed_in_file_version", where))),
            _source_key(alt.get("source"), sources, where),
        )
        for alt in raw.get("alternative_claims") or ()
    )
    return RelayFix(
        id=str(_require(raw, "id", where)),
        kb=str(_require(raw, "kb", where)),
        product=str(_require(raw, "product", where)),
        title=str(_require(raw, "title", where)),
        file=_optional_str(raw.get("file"), f"{where}.file"),
        fixed_in_file_version=None if threshold is None else parse_version(str(threshold)),
        first_in_level=str(_require(raw, "first_in_level", where)),
        decides_relay_fix=bool(raw.get("decides_relay_fix")),
        source=_source_key(raw.get("source"), sources, where),
        alternative_versions=alternatives,
    )


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate builds.yml (the default catalog is read once and cached)."""
    if path is None:
        return _default_catalog()
    return _read(path)


# exchange_batch assesses a batch's hosts on threads that all ask for the catalog at once: a
# lock makes them wait for one parse instead of each parsing it (functools.cache alone does
# not stop concurrent misses).
_DEFAULT_LOCK = threading.Lock()
# libyaml's parser where PyYAML was built with it (same SafeConstructor, a tenth of the time)
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _default_catalog() -> Catalog:
    with _DEFAULT_LOCK:
        return _cached_default()


@functools.cache
def _cached_default() -> Catalog:
    return _read(DEFAULT_CATALOG_PATH)


def _read(path: Path) -> Catalog:
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_LOADER)  # noqa: S506 - a SafeLoader
    if not isinstance(data, Mapping):
        raise CatalogError(f"{path}: not a YAML mapping")
    return parse_catalog(data)


# --- explanation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FixStatus:
    """Whether one relay fix is present, and on what evidence."""

    id: str
    kb: str
    title: str
    present: bool | None
    basis: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kb": self.kb,
            "title": self.title,
            "present": self.present,
            "basis": self.basis,
            "source": self.source,
        }


@dataclass(frozen=True)
class BuildExplanation:
    """What a version number is; `to_dict` is the `relayguard build --json` contract."""

    version: str
    known: bool
    product: str | None
    platform: str | None
    level: str | None
    security_update: str | None
    update_kind: str | None
    released: str | None
    supported: bool | None
    relay_fix: bool | None
    source: str | None
    kb: str | None
    announcement: str | None
    nearest_below: str | None
    nearest_above: str | None
    msexcimc: str | None
    fixes: tuple[FixStatus, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "known": self.known,
            "product": self.product,
            "platform": self.platform,
            "level": self.level,
            "security_update": self.security_update,
            "update_kind": self.update_kind,
            "released": self.released,
            "supported": self.supported,
            "relay_fix": self.relay_fix,
            "source": self.source,
            "kb": self.kb,
            "announcement": self.announcement,
            "nearest": None
            if self.known
            else {"below": self.nearest_below, "above": self.nearest_above},
            "msexcimc": self.msexcimc,
            "fixes": [fix.to_dict() for fix in self.fixes],
            "notes": list(self.notes),
        }


def nearest_builds(
    catalog: Catalog, product: Product, version: BuildVersion
) -> tuple[BuildRow | None, BuildRow | None]:
    """The closest known builds of the same product below and above `version`."""
    below: BuildRow | None = None
    above: BuildRow | None = None
    for row in catalog.builds:
        if row.product != product.id:
            continue
        if row.version.key < version.key:
            below = row
        elif row.version.key > version.key and above is None:
            above = row
    return below, above


def _as_version(value: str | BuildVersion) -> BuildVersion:
    return value if isinstance(value, BuildVersion) else parse_version(value)


def _support(
    product: Product, row: BuildRow | None, as_of: date, catalog: Catalog
) -> tuple[bool | None, str]:
    life = product.lifecycle
    if not life.in_support(as_of):
        return False, f"{product.name} left extended support on {life.extended_end}"
    if row is None:
        return None, "support of an unknown build cannot be judged"
    if row.level in product.supported_levels:
        if life.policy == "modern":
            return True, f"{row.level} is a supported level under the Modern Lifecycle Policy"
        return True, f"{row.level} is a supported level until {life.extended_end}"
    levels = ", ".join(sorted(product.supported_levels)) or "none"
    cite = catalog.sources[product.supported_levels_source].title
    return False, f"{row.level} is not a supported level (supported: {levels}; {cite})"


def _fix_status(
    fix: RelayFix,
    catalog: Catalog,
    row: BuildRow | None,
    msexcimc: BuildVersion | None,
) -> tuple[FixStatus, list[str]]:
    notes: list[str] = []
    cite = catalog.sources[fix.source].cite()
    level_row = catalog.level_row(fix.product, fix.first_in_level)

    def status(present: bool | None, basis: str) -> FixStatus:
        return FixStatus(fix.id, fix.kb, fix.title, present, basis, cite)

    if fix.fixed_in_file_version is not None and msexcimc is not None:
        threshold = fix.fixed_in_file_version
        present = msexcimc.key >= threshold.key
        relation = ">=" if present else "<"
        for alternative, source_key in fix.alternative_versions:
            if threshold.key <= msexcimc.key < alternative.key:
                notes.append(
                    f"{fix.file} {msexcimc} meets {fix.kb}'s threshold {threshold} but not "
                    f"{alternative} ({catalog.sources[source_key].title})"
                )
        return status(present, f"{fix.file} {msexcimc} {relation} {threshold}"), notes
    if row is None or level_row is None:
        return status(None, "unknown build and no file version"), notes
    if row.version.key >= level_row.version.key:
        return status(True, f"build {row.version} includes {fix.first_in_level}"), notes
    if fix.fixed_in_file_version is not None:
        notes.append(
            f"{fix.id}: build {row.version} predates {fix.first_in_level}; a hotfix would show "
            f"only in {fix.file}'s file version ({fix.fixed_in_file_version} or later)"
        )
        return status(False, f"build {row.version} predates {fix.first_in_level}"), notes
    return (
        status(
            None,
            f"build {row.version} predates {fix.first_in_level}; {fix.kb} gives no file version "
            "by which a pre-service-pack hotfix could be recognised",
        ),
        notes,
    )


def _exchange55_level(catalog: Catalog, version: BuildVersion) -> BuildRow | None:
    """Exchange 5.5 servers print four parts (5.5.2650.21) where KB Q158530 gives three
    (5.5.2650): an unlisted fourth part is matched to its service pack by the first three."""
    if (version.major, version.minor) != (5, 5) or not version.revision:
        return None
    return catalog.by_version.get((version.major, version.minor, version.build, 0))


def explain(
    version: str | BuildVersion,
    *,
    as_of: date,
    msexcimc: str | BuildVersion | None = None,
    catalog: Catalog | None = None,
) -> BuildExplanation:
    """Explain a build. `as_of` is the day support is judged for; `msexcimc` is the file
    version of Exchange 5.5's msexcimc.exe when known. Raises InvalidVersionError."""
    catalog = catalog if catalog is not None else load_catalog()
    parsed = _as_version(version)
    file_version = None if msexcimc is None else _as_version(msexcimc)
    product = catalog.product_of(parsed)
    exact = catalog.by_version.get(parsed.key)
    row = exact or _exchange55_level(catalog, parsed)
    notes: list[str] = []
    if product is None:
        return BuildExplanation(
            version=str(parsed),
            known=False,
            product=None,
            platform=None,
            level=None,
            security_update=None,
            update_kind=None,
            released=None,
            supported=None,
            relay_fix=None,
            source=None,
            kb=None,
            announcement=None,
            nearest_below=None,
            nearest_above=None,
            msexcimc=None if file_version is None else str(file_version),
            fixes=(),
            notes=(f"{parsed} is not an Exchange 5.5, 2013, 2016, 2019 or SE version number",),
        )
    if file_version is not None and product.id != Platform.EXCHANGE55:
        notes.append("msexcimc.exe exists only on Exchange 5.5; its version was ignored")
        file_version = None
    supported, support_note = _support(product, row, as_of, catalog)
    notes.append(support_note)
    fixes: list[FixStatus] = []
    relay_fix: bool | None = None
    for fix in catalog.relay_fixes:
        if fix.product != product.id:
            continue
        status, fix_notes = _fix_status(fix, catalog, row, file_version)
        fixes.append(status)
        notes.extend(fix_notes)
        if fix.decides_relay_fix:
            relay_fix = status.present
    below, above = (None, None) if row is not None else nearest_builds(catalog, product, parsed)
    if row is None:
        notes.insert(0, f"{parsed} is not in the catalog; it is reported, not guessed")
    elif exact is None:
        notes.insert(
            0,
            f"{parsed} is not in the catalog; its first three parts are {row.level} "
            f"({row.version}, {catalog.sources[row.source].title})",
        )
    else:
        if row.released_source is not None:
            notes.append(f"release date from {catalog.sources[row.released_source].title}")
        if row.note is not None:
            notes.append(row.note)
    return BuildExplanation(
        version=str(parsed),
        known=exact is not None,
        product=product.name,
        platform=product.platform.value,
        level=None if row is None else row.level,
        security_update=None if row is None else row.update,
        update_kind=None if row is None else row.kind,
        released=None if row is None else row.released,
        supported=supported,
        relay_fix=relay_fix,
        source=None if row is None else catalog.sources[row.source].cite(),
        kb=None if row is None else row.kb,
        announcement=None if row is None else row.url,
        nearest_below=None if below is None else str(below.version),
        nearest_above=None if above is None else str(above.version),
        msexcimc=None if file_version is None else str(file_version),
        fixes=tuple(fixes),
        notes=tuple(notes),
    )
