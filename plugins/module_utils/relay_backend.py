"""The backend protocol every MTA implements (Postfix, Exim, Sendmail), target side.

Runs on the managed host, shipped by Ansible with the modules: standard library only, valid on
the Pythons targets ship (3.7+; `typing.Protocol` is only used under TYPE_CHECKING).

A run goes through the same steps on every MTA:

    facts -> plan (pure, over the shared rule shape) -> backup -> apply
          -> validate (the MTA's own checker) -> reload -> verify -> restore on any failure

* Facts are the *effective* configuration: every value carries its `Origin` (main.cf,
  a master.cf service's `-o` override, a lookup table, the compiled-in default...), so a plan
  can fix a value where it is set, not where one expects it.
* A `Rule` is (id, check, fix, source): `check` says what is wrong (None: compliant), `fix`
  returns the `Change`s that correct it, both pure; `source` cites the primary source.
* A `Change` names what it removes (`removes`: relay destinations or trusted networks a site
  may rely on). RFC 2505 section 2 asks an MTA to refuse unauthorised relaying; it
  does not ask to drop the clients and destinations a site authorised, so a plan that
  drops one names it in the diff and, in enforce mode, is refused unless the inventory says
  `relay_allow_removals: true` (`removal_refusal`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Protocol
else:  # typing.Protocol is Python 3.8+; at run time the protocol is documentation only
    Protocol = Generic

F = TypeVar("F")  # a backend's facts
D = TypeVar("D")  # a backend's desired state (validated module options)
P = TypeVar("P")  # a backend's plan (usually `Plan`)
C = TypeVar("C")  # a backend's change type (`Change`, or one that carries more)
D_contra = TypeVar("D_contra", contravariant=True)  # the desired state, as the protocol takes it

# Where a value comes from (Origin.kind).
ORIGIN_KINDS = ("default", "main", "override", "table", "file")


@dataclass(frozen=True)
class Origin:
    """Where an effective value is set: `kind` is one of ORIGIN_KINDS, `path` the file,
    `scope` the part of it (a master.cf service "smtp/inet", an Exim router, an mc FEATURE)."""

    kind: str
    path: str = ""
    scope: str = ""

    def describe(self) -> str:
        where = self.path or self.kind
        return f"{where} ({self.scope})" if self.scope else where


@dataclass(frozen=True)
class Setting:
    """One effective configuration value and its origin."""

    name: str
    value: str
    origin: Origin


@dataclass(frozen=True)
class Change:
    """One edit a plan makes. `target` says where ("main.cf mynetworks",
    "master.cf smtp/inet mynetworks", "cidr:/etc/postfix/networks"); `removes` lists the relay
    destinations or trusted networks the edit drops (never silently: see removal_refusal)."""

    rule: str
    target: str
    before: str
    after: str
    reason: str
    removes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:  # JSON for the module's return
        return {
            "rule": self.rule,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "removes": list(self.removes),
        }


@dataclass(frozen=True)
class Rule(Generic[F, D, C]):
    """The shared rule shape: pure `check` (a problem, or None when compliant) and pure `fix`
    (the changes that correct it: `Change`, or a backend's richer change type), with the
    primary `source` it implements."""

    id: str
    check: Callable[[F, D], str | None]
    fix: Callable[[F, D], Sequence[C]]
    source: str


@dataclass(frozen=True)
class Plan:
    """What a backend will change (empty: compliant), its warnings, and the findings
    (rule id -> problem) it was made from."""

    changes: tuple[Change, ...] = ()
    warnings: tuple[str, ...] = ()
    findings: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def removals(self) -> tuple[str, ...]:
        """Everything the plan drops, "target: item", in plan order."""
        return tuple(f"{c.target}: {item}" for c in self.changes for item in c.removes)


def evaluate(rules: Sequence[Rule[F, D, Change]], facts: F, desired: D) -> Plan:
    """Run each rule's check and, where it finds a problem, its fix (pure)."""
    changes: list[Change] = []
    findings: list[tuple[str, str]] = []
    for rule in rules:
        problem = rule.check(facts, desired)
        if problem is None:
            continue
        findings.append((rule.id, problem))
        changes.extend(rule.fix(facts, desired))
    return Plan(tuple(changes), (), tuple(findings))


def removal_refusal(removals: Sequence[str], enforce: bool, allow_removals: bool) -> str | None:
    """Why an enforce run must not apply a plan that removes destinations or networks
    (None: it may). Audit/check runs only report them."""
    if not removals or not enforce or allow_removals:
        return None
    return (
        "the plan removes " + "; ".join(removals) + ": refused in enforce mode (nothing was "
        "changed); list them in the inventory to keep them, or set relay_allow_removals: true"
    )


@dataclass(frozen=True)
class Backup:
    """Copies taken before a change: (original path, backup path) pairs."""

    files: tuple[tuple[str, str], ...]

    @property
    def primary(self) -> str | None:
        return self.files[0][1] if self.files else None


class MtaBackend(Protocol[F, D_contra, P]):
    """What every MTA backend implements. Reads and writes happen only in facts, backup,
    apply, validate, reload, verify and restore; `plan` is pure."""

    name: str

    def facts(self, desired: D_contra) -> F:
        """The effective configuration, each value with its Origin."""

    def plan(self, facts: F, desired: D_contra) -> P:
        """Pure: the changes (rule table over facts) that reach `desired`."""

    def backup(self, facts: F) -> Backup:
        """Copy every file `apply` may write."""

    def apply(self, facts: F, plan: P) -> None:
        """Write the plan (configuration files, tables, their compiled maps)."""

    def validate(self, facts: F) -> str | None:
        """The MTA's own checker on the written configuration (None: valid)."""

    def reload(self, facts: F) -> bool:
        """Make a running MTA use the configuration; False when it is not running."""

    def verify(self, desired: D_contra) -> str | None:
        """Re-read the facts; a problem when the plan did not take effect (None: done)."""

    def restore(self, backup: Backup) -> None:
        """Put every backed-up file back (and reload if the MTA is running)."""


class ChangeFailed(Exception):
    """A step after the backup failed; `restored` says whether the backup was put back."""

    def __init__(self, message: str, backup: Backup, restored: bool) -> None:
        super().__init__(message)
        self.backup = backup
        self.restored = restored


def change(backend: MtaBackend[F, D, P], facts: F, plan: P, desired: D) -> tuple[Backup, bool]:
    """The common sequence: backup, apply, validate, reload, verify; on any failure restore
    the backup and raise ChangeFailed. Returns the backup and whether the MTA was reloaded."""
    backup = backend.backup(facts)
    try:
        backend.apply(facts, plan)
        problem = backend.validate(facts)
        if problem is not None:
            raise ValueError(f"{backend.name} rejected the new configuration: {problem}")
        reloaded = backend.reload(facts)
        problem = backend.verify(desired)
        if problem is not None:
            raise ValueError(f"the change did not take effect: {problem}")
    except Exception as exc:  # any failure after the backup: put it back
        try:
            backend.restore(backup)
        except Exception as again:
            raise ChangeFailed(f"{exc}; restoring ALSO failed: {again}", backup, False) from None
        raise ChangeFailed(f"{exc}; configuration restored", backup, True) from None
    return backup, reloaded


def rule_results(
    rules: Sequence[Rule[F, D, C]], findings: Sequence[tuple[str, str]], subject: str
) -> list[dict[str, str]]:
    """Every rule's result on the configuration as read, for the report (one finding per
    rule: fail with its problem, else pass), in the table's order."""
    failed = dict(findings)
    return [
        {
            "id": rule.id,
            "source": rule.source,
            "subject": subject,
            "result": "fail" if rule.id in failed else "pass",
            "reason": failed.get(rule.id, "compliant"),
        }
        for rule in rules
    ]


def backup_files(backup: Backup) -> list[dict[str, str]]:
    """The module's return for a backup: every (path, copy) pair; copy "" means the file did
    not exist before the change (a restore removes it)."""
    return [{"path": path, "copy": copy} for path, copy in backup.files]


def checked_backup(
    pairs: Sequence[dict[str, str]], backup_dir: str, managed: Sequence[str]
) -> Backup:
    """The `backup_files` a restore was given, checked before anything is touched: each
    `path` is one of the files the backend manages (`managed`), each `copy` a regular file
    directly in `backup_dir` named after its path (or "" for a file that was absent).
    ValueError names the entry that is not."""
    if not pairs:
        raise ValueError("backup_files is empty: give the backup_files of the run to undo")
    where = os.path.realpath(backup_dir)
    known = {os.path.realpath(p) for p in managed}
    out = []
    for number, pair in enumerate(pairs, 1):
        path, copy = str(pair.get("path") or ""), str(pair.get("copy") or "")
        if not os.path.isabs(path) or os.path.realpath(path) not in known:
            raise ValueError(
                f"backup_files entry {number}: path {path!r} is not a file this backend "
                f"manages ({', '.join(managed)})"
            )
        if copy:
            if os.path.dirname(os.path.realpath(copy)) != where:
                raise ValueError(
                    f"backup_files entry {number}: copy {copy!r} is outside the backup "
                    f"directory {backup_dir}"
                )
            if not os.path.basename(copy).startswith(os.path.basename(path) + "."):
                raise ValueError(
                    f"backup_files entry {number}: copy {copy!r} is not a backup of {path}"
                )
            if not os.path.isfile(copy):
                raise ValueError(f"backup_files entry {number}: copy {copy!r} does not exist")
        out.append((path, copy))
    return Backup(tuple(out))


def _content(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def restore_changes(backup: Backup) -> list[tuple[str, bytes | None, bytes | None]]:
    """(path, now, after the restore) for each file a restore of `backup` would change
    (None: absent)."""
    out = []
    for path, copy in backup.files:
        now, wanted = _content(path), (_content(copy) if copy else None)
        if now != wanted:
            out.append((path, now, wanted))
    return out


def restore_diff(changes: Sequence[tuple[str, bytes | None, bytes | None]]) -> list[dict[str, str]]:
    """Ansible diffs of a restore (a binary file, such as a compiled map, is named only)."""

    def text(data: bytes | None) -> str:
        if data is None:
            return ""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return f"(binary, {len(data)} bytes)\n"

    return [
        {"before_header": p, "after_header": p, "before": text(now), "after": text(after)}
        for p, now, after in changes
    ]


def restore_backup(backend: MtaBackend[F, D, P], backup: Backup) -> None:
    """Put the backup back with the backend's own restore (which regenerates and reloads),
    then check every file byte for byte."""
    backend.restore(backup)
    left = [path for path, _now, _after in restore_changes(backup)]
    if left:
        raise ValueError(f"after the restore these differ from their backup: {', '.join(left)}")
