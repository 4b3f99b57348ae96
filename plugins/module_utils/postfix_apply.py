"""Postfix relay closure, apply (writes): backups, `postconf -e` / `postconf -P`,
`postfix check`, reload, and restore on any failure.

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from command_runner import (
        CommandResult,
    )
    from postfix_change import (
        RelayPlan,
    )
    from postfix_facts import (
        PostfixFacts,
        PostfixTools,
        run_capture,
        run_command,
    )
    from postfix_validate import (
        ApplyError,
        InputError,
        PostfixCommandError,
        RelayConfigError,
    )
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.command_runner import (
            CommandResult,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_change import (
            RelayPlan,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            PostfixFacts,
            PostfixTools,
            run_capture,
            run_command,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            ApplyError,
            InputError,
            PostfixCommandError,
            RelayConfigError,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from command_runner import (
            CommandResult,
        )
        from postfix_change import (
            RelayPlan,
        )
        from postfix_facts import (
            PostfixFacts,
            PostfixTools,
            run_capture,
            run_command,
        )
        from postfix_validate import (
            ApplyError,
            InputError,
            PostfixCommandError,
            RelayConfigError,
        )


# --- backups -----------------------------------------------------------------------------

# datetime.UTC is Python 3.11+; the managed host may run an older Python.
_UTC = datetime.timezone.utc  # noqa: UP017
BACKUP_PATTERN = re.compile(r"^main\.cf\.\d{8}T\d{6}\.\d{6}Z\Z")
LOCK_NAME = ".relayguard.lock"
PENDING_NAME = ".relayguard-pending.json"


@dataclass(frozen=True)
class BackupPolicy:
    """Where main.cf backups go and how many are kept (oldest pruned first)."""

    directory: str
    keep: int = 10

    def create(self, main_cf: str) -> str:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        stamp = datetime.datetime.now(_UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = os.path.join(self.directory, f"main.cf.{stamp}")
        while os.path.exists(path):  # same microsecond: wait for the next one
            time.sleep(0.001)
            stamp = datetime.datetime.now(_UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            path = os.path.join(self.directory, f"main.cf.{stamp}")
        with open(main_cf, "rb") as source:
            content = source.read()
        _write_atomically(path, content, like=main_cf)
        master_cf = os.path.join(os.path.dirname(main_cf), "master.cf")
        if os.path.isfile(master_cf):  # master.cf overrides are edited too (postconf -P)
            with open(master_cf, "rb") as source:
                _write_atomically(master_backup(path), source.read(), like=master_cf)
        return path

    def backups(self) -> list[str]:
        try:
            names = sorted(n for n in os.listdir(self.directory) if BACKUP_PATTERN.match(n))
        except FileNotFoundError:
            return []
        return [os.path.join(self.directory, n) for n in names]

    def prune(self, protect: Sequence[str] = ()) -> list[str]:
        """Delete the oldest backups beyond `keep`; never one in `protect`. Returns deleted."""
        existing = self.backups()
        excess = len(existing) - self.keep
        removed = []
        for path in existing:
            if excess <= 0:
                break
            if path in protect:
                continue
            try:
                os.unlink(path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(master_backup(path))
            except OSError:  # pruning is housekeeping: never fail a change for it
                continue
            removed.append(path)
            excess -= 1
        return removed

    @contextlib.contextmanager
    def lock(self, config_dir: str) -> Iterator[None]:
        """Exclusive lock for one change of this instance (a second run fails at once)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        path = os.path.join(self.directory, LOCK_NAME)
        handle: IO[str] = open(path, "a", encoding="ascii")  # noqa: SIM115 - held for the block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ApplyError(
                    f"another postfix_relay run is changing {config_dir} (lock {path} is held); "
                    "nothing was changed: run again when it has finished",
                    rolled_back=False,
                    backup_file=None,
                    wrote=False,
                ) from None
            yield
        finally:
            handle.close()

    @property
    def pending_path(self) -> str:
        return os.path.join(self.directory, PENDING_NAME)

    def pending(self) -> dict[str, str] | None:
        """The record of a change that was written but never validated and reloaded."""
        try:
            with open(self.pending_path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def mark_pending(self, record: Mapping[str, str]) -> None:
        _write_atomically(self.pending_path, json.dumps(dict(record)).encode("utf-8"))

    def clear_pending(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pending_path)


def master_backup(main_backup: str) -> str:
    """The master.cf copy taken with a main.cf backup: same directory, same time stamp."""
    directory, name = os.path.split(main_backup)
    return os.path.join(directory, "master.cf." + name[len("main.cf.") :])


def _write_atomically(path: str, content: bytes, like: str | None = None) -> None:
    """Write `content` to `path` via a temporary file in the same directory and rename, so
    a reader (or a crash) never sees half a file; mode and owner copied from `like`."""
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=".relayguard.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None and os.path.exists(like):
            status = os.stat(like)
            os.chmod(temporary, status.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(temporary, status.st_uid, status.st_gid)
        else:
            os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# --- apply (writes) ----------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyOutcome:
    """What an apply or restore did."""

    backup_file: str | None
    reloaded: bool
    messages: tuple[str, ...] = ()
    pruned: tuple[str, ...] = ()


class _StepFailed(Exception):
    pass


def _failure_text(exc: Exception) -> str:
    if isinstance(exc, (_StepFailed, RelayConfigError)):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


_QUEUE_LINE = re.compile(r"^queue_directory\s*=\s*(\S+)\s*$", re.MULTILINE)


def _queue_directory(tools: PostfixTools, config_dir: str) -> str | None:
    result = run_capture([tools.postconf, "-c", config_dir, "-h", "queue_directory"])
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip()
    # main.cf is broken (that may be why we are restoring): read the line ourselves.
    with contextlib.suppress(OSError):
        found = _QUEUE_LINE.findall(read_text(os.path.join(config_dir, "main.cf")))
        if found and "$" not in found[-1]:
            return str(found[-1])
    result = run_capture([tools.postconf, "-d", "-h", "queue_directory"])
    return result.stdout.strip() or None


def postfix_running(tools: PostfixTools, config_dir: str) -> bool:
    """Whether this instance's master runs, from its pid file (`postfix status` would fail
    on a main.cf Postfix cannot parse, and a restore must still reload then)."""
    queue = _queue_directory(tools, config_dir)
    if queue is None:
        return False
    try:
        with open(os.path.join(queue, "pid", "master.pid"), encoding="ascii") as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "master"
    except (OSError, ValueError):
        return False


def postfix_check(tools: PostfixTools, config_dir: str) -> CommandResult:
    return run_command([tools.postfix, "-c", config_dir, "check"])


def postfix_reload(tools: PostfixTools, config_dir: str) -> CommandResult:
    return run_command([tools.postfix, "-c", config_dir, "reload"])


def postconf_edit(tools: PostfixTools, config_dir: str, settings: Mapping[str, str]) -> None:
    """Write parameters with `postconf -e` (it replaces every entry and renames atomically)."""
    for name, value in settings.items():
        if "\n" in value or "\0" in value or "\r" in value:  # defence in depth
            raise PostfixCommandError(f"refusing to write a multi-line value for {name}")
    argv = [tools.postconf, "-c", config_dir, "-e", *(f"{k}={v}" for k, v in settings.items())]
    result = run_capture(argv)
    if result.returncode != 0:
        raise PostfixCommandError(
            f"postconf -e failed: {' '.join(result.stderr.split()) or result.returncode}"
        )


def restore_files(backup: str, main_cf: str) -> None:
    """Put main.cf back from `backup`, and master.cf from the copy taken with it."""
    pairs = [(backup, main_cf)]
    master_copy = master_backup(backup)
    if os.path.basename(backup).startswith("main.cf.") and os.path.isfile(master_copy):
        pairs.append((master_copy, os.path.join(os.path.dirname(main_cf), "master.cf")))
    for source, destination in pairs:
        with open(source, "rb") as handle:
            content = handle.read()
        _write_atomically(destination, content, like=destination)
        if file_digest(destination) != hashlib.sha256(content).hexdigest():
            raise ApplyError(
                f"{destination} differs from {source} after restoring it",
                rolled_back=False,
                backup_file=backup,
            )


def postconf_edit_master(tools: PostfixTools, config_dir: str, settings: Mapping[str, str]) -> None:
    """Write master.cf service overrides with `postconf -P service/type/name=value`
    (postconf(1) -P, Postfix 2.11+): the `-o` of that service changes, nothing else."""
    if not settings:
        return
    for name, value in settings.items():
        if any(c in value for c in "\n\r\0 \t"):  # -o values are single words (master(5))
            raise PostfixCommandError(f"refusing to write {name} with white space in master.cf")
    argv = [tools.postconf, "-c", config_dir, "-P", *(f"{k}={v}" for k, v in settings.items())]
    result = run_capture(argv)
    if result.returncode != 0:
        raise PostfixCommandError(
            f"postconf -P failed: {' '.join(result.stderr.split()) or result.returncode}"
        )


def _roll_back(
    tools: PostfixTools,
    config_dir: str,
    backup: str,
    running: bool,
    failure: str,
    restored: str = "",
) -> ApplyError:
    """Put `backup` back after `failure`; reload so Postfix runs the old configuration."""
    main_cf = os.path.join(config_dir, "main.cf")
    try:
        restore_files(backup, main_cf)
    except (OSError, ApplyError) as exc:
        return ApplyError(
            f"{failure}; restoring main.cf from {backup} ALSO failed: {exc}",
            rolled_back=False,
            backup_file=backup,
        )
    message = f"{failure}; {restored or f'main.cf restored from {backup}'}"
    if running:
        reload = postfix_reload(tools, config_dir)
        if reload.returncode != 0:
            message += f", but reloading the restored configuration failed: {reload.summary()}"
        else:
            message += " and Postfix reloaded with it"
    return ApplyError(message, rolled_back=True, backup_file=backup)


def _validate_and_reload(
    tools: PostfixTools,
    config_dir: str,
    running: bool,
    verify: Callable[[], str | None] | None,
    what: str,
) -> bool:
    check = postfix_check(tools, config_dir)
    if check.returncode != 0:
        raise _StepFailed(f"postfix check rejected {what}: {check.summary()}")
    if verify is not None:
        problem = verify()
        if problem:
            raise _StepFailed(f"{what} did not take effect: {problem}")
    if not running:
        return False
    reload = postfix_reload(tools, config_dir)
    if reload.returncode != 0:
        raise _StepFailed(f"postfix reload failed after {what}: {reload.summary()}")
    return True


def require_valid(tools: PostfixTools, config_dir: str) -> None:
    """Refuse to start when `postfix check` already fails (nothing is written then)."""
    precheck = postfix_check(tools, config_dir)
    if precheck.returncode != 0:
        raise ApplyError(
            f"postfix check fails before any change, so nothing was written: {precheck.summary()}",
            rolled_back=False,
            backup_file=None,
            wrote=False,
        )


def apply_plan(
    tools: PostfixTools,
    facts: PostfixFacts,
    plan: RelayPlan,
    backups: BackupPolicy,
    verify: Callable[[], str | None] | None = None,
) -> ApplyOutcome:
    """Back up main.cf, write the plan, validate, reload; on any failure put main.cf back.

    `verify` re-reads the instance and returns a problem when the plan did not take effect.
    Refuses to start when `postfix check` already fails (nothing is written then).
    """
    config_dir = facts.config_dir
    with backups.lock(config_dir):
        require_valid(tools, config_dir)
        running = postfix_running(tools, config_dir)
        backup = backups.create(facts.main_cf)
        backups.mark_pending({"config_dir": config_dir, "backup_file": backup})
        try:
            if plan.settings():
                postconf_edit(tools, config_dir, plan.settings())
            postconf_edit_master(tools, config_dir, plan.override_settings())
            reloaded = _validate_and_reload(tools, config_dir, running, verify, "the new main.cf")
        except Exception as exc:  # any failure after the write: put main.cf back
            error = _roll_back(tools, config_dir, backup, running, _failure_text(exc))
            if error.rolled_back:
                backups.clear_pending()
            raise error from None
        backups.clear_pending()
        pruned = backups.prune(protect=[backup])
    messages = () if running else ("Postfix is not running: main.cf changed, no reload needed",)
    return ApplyOutcome(backup, reloaded, messages, tuple(pruned))


def finish_pending(tools: PostfixTools, config_dir: str, backups: BackupPolicy) -> ApplyOutcome:
    """Complete a change an earlier run wrote but never validated and reloaded (it was
    killed): validate and reload now, or restore its backup if validation fails."""
    record = backups.pending() or {}
    backup = record.get("backup_file")
    with backups.lock(config_dir):
        running = postfix_running(tools, config_dir)
        try:
            reloaded = _validate_and_reload(
                tools, config_dir, running, None, "the interrupted change"
            )
        except _StepFailed as exc:
            if backup and os.path.isfile(backup):
                error = _roll_back(tools, config_dir, backup, running, str(exc))
                if error.rolled_back:
                    backups.clear_pending()
                raise error from None
            raise ApplyError(str(exc), rolled_back=False, backup_file=backup) from None
        backups.clear_pending()
    return ApplyOutcome(backup, reloaded, ("completed a change an interrupted run had written",))


MAX_BACKUP_BYTES = 4 * 1024 * 1024


def read_backup(field_name: str, path: str) -> bytes:
    """A backup's content, checked: a regular file, bounded in size, text without NUL."""
    if os.path.islink(path) or not os.path.isfile(path):
        raise InputError(field_name, path, "is not a regular file")
    if os.path.getsize(path) > MAX_BACKUP_BYTES:
        raise InputError(field_name, path, "is larger than a main.cf can sensibly be")
    with open(path, "rb") as handle:
        content = handle.read()
    if b"\0" in content:
        raise InputError(field_name, path, "contains NUL bytes: not a main.cf")
    return content


def restore_backup(
    tools: PostfixTools, config_dir: str, backup_file: str, backups: BackupPolicy
) -> ApplyOutcome:
    """Install `backup_file` as main.cf, validate and reload. The main.cf it replaces is
    saved first; if Postfix rejects the backup, that main.cf is put back."""
    content = read_backup("backup_file", backup_file)
    main_cf = os.path.join(config_dir, "main.cf")
    with backups.lock(config_dir):
        running = postfix_running(tools, config_dir)
        saved = backups.create(main_cf)
        try:
            _write_atomically(main_cf, content, like=main_cf)
            master_copy = master_backup(backup_file)
            if os.path.basename(backup_file).startswith("main.cf.") and os.path.isfile(
                master_copy
            ):  # the master.cf taken with it (the run may have edited an override)
                master = read_backup("backup_file", master_copy)
                master_cf = os.path.join(config_dir, "master.cf")
                _write_atomically(master_cf, master, like=master_cf)
            reloaded = _validate_and_reload(
                tools, config_dir, running, None, f"the backup {backup_file}"
            )
        except Exception as exc:
            raise _roll_back(
                tools,
                config_dir,
                saved,
                running,
                _failure_text(exc),
                f"main.cf put back as it was (saved as {saved})",
            ) from None
        pruned = backups.prune(protect=[saved, backup_file])
        backups.clear_pending()
    return ApplyOutcome(saved, reloaded, (), tuple(pruned))


def read_text(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace")
