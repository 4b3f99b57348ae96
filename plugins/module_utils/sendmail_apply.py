"""Sendmail backend: the MtaBackend steps on the host (backup, apply, validate, reload,
verify, restore) and `run`, what the sendmail_relay module does.

apply writes the mc and the tables the plan edits, regenerates sendmail.cf with m4 and the
access map with makemap (Sendmail Installation and Operation Guide, "Configuration file"
and makemap; docs/sources.md#sendmail-op-guide). validate checks what m4 said and that
``sendmail -C sendmail.cf -bt`` loads the new cf without a configuration error, before the
daemon is told (SIGHUP: the daemon re-executes itself and reads the new cf and class R).
Any failure after the backup puts every file back (relay_backend.change).

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay_backend import (
        Backup,
        ChangeFailed,
        Plan,
        backup_files,
        change,
        checked_backup,
        removal_refusal,
        restore_backup,
        restore_changes,
        restore_diff,
        rule_results,
    )
    from sendmail_facts import SendmailFacts, SendmailFactsError, network_key, read_facts
    from sendmail_plan import FALSE, KEEP, RULES, TRUE, SendmailDesired, plan, rendered
else:
    try:  # as Ansible ships it
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Backup,
            ChangeFailed,
            Plan,
            backup_files,
            change,
            checked_backup,
            removal_refusal,
            restore_backup,
            restore_changes,
            restore_diff,
            rule_results,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.sendmail_facts import (
            SendmailFacts,
            SendmailFactsError,
            network_key,
            read_facts,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.sendmail_plan import (
            FALSE,
            KEEP,
            RULES,
            TRUE,
            SendmailDesired,
            plan,
            rendered,
        )
    except ImportError:  # loaded by path outside Ansible (tests)
        from relay_backend import (
            Backup,
            ChangeFailed,
            Plan,
            backup_files,
            change,
            checked_backup,
            removal_refusal,
            restore_backup,
            restore_changes,
            restore_diff,
            rule_results,
        )
        from sendmail_facts import SendmailFacts, SendmailFactsError, network_key, read_facts
        from sendmail_plan import FALSE, KEEP, RULES, TRUE, SendmailDesired, plan, rendered

__all__ = [
    "ChangeFailed",
    "SendmailBackend",
    "SendmailFactsError",
    "desired_state",
    "restore",
    "run",
]

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")
_CONFIG_ERROR = re.compile(r": line \d+: ")
RELOAD_WAIT = 30.0


def _absolute(option: str, value: str) -> str:
    if not value or not os.path.isabs(value) or "\n" in value or "\0" in value:
        raise SendmailFactsError(f"{option}: {value!r} is not an absolute path")
    return value


def _authenticated(value: object) -> str:
    if isinstance(value, bool):
        return TRUE if value else FALSE
    text = str(value).strip().lower()
    mapped = {"keep": KEEP, "true": TRUE, "yes": TRUE, "false": FALSE, "no": FALSE}
    if text not in mapped:
        raise SendmailFactsError(f"relay_authenticated: {value!r} is not keep, true or false")
    return mapped[text]


def desired_state(params: dict[str, Any]) -> SendmailDesired:
    """Validated options (SendmailFactsError names the bad one); nothing is read or run."""
    _absolute("mc_path", params["mc_path"])
    networks = params.get("relay_allowed_networks")
    if networks is not None:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=True)
            except ValueError as exc:
                raise SendmailFactsError(f"relay_allowed_networks: {exc}") from None
            network_key(network)
    partners = tuple(str(d).lower() for d in params.get("relay_partner_domains") or ())
    for domain in partners:
        if not _DOMAIN.match(domain):
            raise SendmailFactsError(f"relay_partner_domains: {domain!r} is not a domain name")
    return SendmailDesired(
        None if networks is None else tuple(networks),
        partners,
        _authenticated(params.get("relay_authenticated", KEEP)),
    )


def _run(
    argv: list[str], stdin: str = "", cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    # A module_utils file outside AnsibleModule (the lab and tests call it too).
    return subprocess.run(  # pylint: disable=ansible-bad-function
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def _write(path: str, text: str) -> None:
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    temporary = f"{path}.relayguard-new"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


class SendmailBackend:
    """relay_backend.MtaBackend for one Sendmail (its mc, cf, access and class R files)."""

    name = "sendmail"

    def __init__(self, params: dict[str, Any]) -> None:
        self.mc_path = _absolute("mc_path", params["mc_path"])
        self.cf_path = params.get("cf_path") or os.path.join(
            os.path.dirname(self.mc_path), "sendmail.cf"
        )
        self.sendmail = params.get("sendmail_binary") or "/usr/sbin/sendmail"
        self.makemap = params.get("makemap_binary") or "/usr/sbin/makemap"
        self.m4 = params.get("m4_binary") or "m4"
        self.backup_dir = params.get("backup_dir") or os.path.join(
            os.path.dirname(self.mc_path), "relayguard-backups"
        )
        self.restart = params.get("restart", True)
        self.m4_problem: str | None = None
        self.reloaded = False  # whether this run told the daemon (restore tells it again)

    # -- reading -------------------------------------------------------------------------

    def facts(self, desired: SendmailDesired) -> SendmailFacts:
        return read_facts(self.mc_path, self.cf_path)

    def plan(self, facts: SendmailFacts, desired: SendmailDesired) -> Plan:
        return plan(facts, desired)

    def files(self, facts: SendmailFacts) -> list[str]:
        """Every file apply may write."""
        paths = [self.mc_path, self.cf_path, facts.access_path, facts.relay_domains_file]
        if facts.access_path:
            paths.append(facts.access_path + ".db")
        return [p for p in paths if p]

    # -- writing -------------------------------------------------------------------------

    def backup(self, facts: SendmailFacts) -> Backup:
        os.makedirs(self.backup_dir, mode=0o700, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
        pairs = []
        for path in self.files(facts):
            copy = ""  # absent before the run: restore removes it
            if os.path.exists(path):
                copy = os.path.join(self.backup_dir, f"{os.path.basename(path)}.{stamp}")
                shutil.copy2(path, copy)
            pairs.append((path, copy))
        return Backup(tuple(pairs))

    def apply(self, facts: SendmailFacts, made: Plan) -> None:
        for path, text in rendered(facts, made).items():
            _write(path, text)
        self.regenerate(facts)

    def regenerate(self, facts: SendmailFacts) -> None:
        """m4 mc > cf (what m4 says is kept for validate) and makemap of the access map."""
        # in the mc's directory: an mc may include(`../m4/cf.m4') relative to it
        made = _run([self.m4, self.mc_path], cwd=os.path.dirname(self.mc_path))
        self.m4_problem = None
        if made.returncode != 0 or "ERROR" in made.stderr or not made.stdout.strip():
            self.m4_problem = f"m4 {self.mc_path}: {made.stderr.strip() or 'no output'}"
            return
        _write(self.cf_path, made.stdout)
        if facts.access_path and os.path.exists(facts.access_path):
            with open(facts.access_path, encoding="utf-8") as handle:
                source = handle.read()
            mapped = _run([self.makemap, "-C", self.cf_path, "hash", facts.access_path], source)
            if mapped.returncode != 0:
                raise SendmailFactsError(f"makemap hash {facts.access_path}: {mapped.stderr}")

    def validate(self, facts: SendmailFacts) -> str | None:
        if self.m4_problem:
            return self.m4_problem
        with open(self.cf_path, encoding="utf-8") as handle:
            if "Scheck_rcpt" not in handle.read():
                return f"{self.cf_path} has no check_rcpt ruleset"
        tested = _run([self.sendmail, "-C", self.cf_path, "-bt"], "/quit\n")
        output = tested.stdout + tested.stderr
        if tested.returncode != 0 or _CONFIG_ERROR.search(output):
            return f"sendmail -C {self.cf_path} -bt: {output.strip()[-2000:]}"
        return None

    def daemon_pid(self, facts: SendmailFacts) -> int | None:
        try:
            with open(facts.pid_file, encoding="utf-8") as handle:
                pid = int(handle.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if os.path.exists(f"/proc/{pid}") else None

    def reload(self, facts: SendmailFacts) -> bool:
        """SIGHUP the running daemon (it re-executes itself) and wait for its new pid file."""
        pid = self.daemon_pid(facts)
        if pid is None or not self.restart:
            return False
        before = os.stat(facts.pid_file).st_mtime_ns
        os.kill(pid, signal.SIGHUP)
        self.reloaded = True
        deadline = time.monotonic() + RELOAD_WAIT
        while time.monotonic() < deadline:
            if os.path.exists(facts.pid_file) and os.stat(facts.pid_file).st_mtime_ns != before:
                return True
            time.sleep(0.2)
        raise SendmailFactsError(f"sendmail (pid {pid}) did not restart after SIGHUP")

    def verify(self, desired: SendmailDesired) -> str | None:
        again = plan(self.facts(desired), desired)
        if again.changed:
            return "still to change: " + "; ".join(c.target for c in again.changes)
        return None

    def restore(self, backup: Backup) -> None:
        for original, copy in backup.files:
            if copy:
                shutil.copy2(copy, original)
            elif os.path.exists(original):
                os.remove(original)
        facts = self.facts(SendmailDesired())
        if self.reloaded and self.daemon_pid(facts) is not None:
            self.reload(facts)


def _diff(facts: SendmailFacts, made: Plan) -> list[dict[str, str]]:
    before = {
        facts.mc_path: facts.mc_text,
        facts.access_path: facts.access_text,
        facts.relay_domains_file: facts.relay_domains_text,
    }
    return [
        {"before_header": p, "after_header": p, "before": before.get(p, ""), "after": text}
        for p, text in rendered(facts, made).items()
    ]


def run(params: dict[str, Any], check_mode: bool, diff: bool) -> dict[str, Any]:
    """Plan (and unless check_mode, apply) the relay policy; the module's result."""
    desired = desired_state(params)
    backend = SendmailBackend(params)
    facts = backend.facts(desired)
    made = backend.plan(facts, desired)
    result: dict[str, Any] = {
        "changed": made.changed,
        "changes": [c.as_dict() for c in made.changes],
        "removals": list(made.removals()),
        "findings": [{"rule": r, "problem": p} for r, p in made.findings],
        "rules": rule_results(RULES, made.findings, backend.mc_path),
        "warnings": list(made.warnings),
        "mc_path": backend.mc_path,
        "backup_file": None,
        "reloaded": False,
    }
    if diff:
        result["diff"] = _diff(facts, made)
    if check_mode or not made.changed:
        if made.removals() and not params.get("relay_allow_removals"):
            result["warnings"].append(
                "in enforce mode this plan would be refused: it removes "
                + "; ".join(made.removals())
            )
        return result
    refusal = removal_refusal(made.removals(), True, bool(params.get("relay_allow_removals")))
    if refusal is not None:
        raise SendmailFactsError(refusal)
    backup, reloaded = change(backend, facts, made, desired)
    result["backup_file"] = backup.primary
    result["backup_files"] = backup_files(backup)
    result["reloaded"] = reloaded
    return result


def restore(params: dict[str, Any], check_mode: bool, diff: bool) -> dict[str, Any]:
    """state=restored: put back exactly the files of `backup_files` (copies from backup_dir,
    of the files this Sendmail's mc names), then tell a running daemon. Every entry is
    checked first (SendmailFactsError names a bad one): nothing is touched before."""
    backend = SendmailBackend(params)
    facts = backend.facts(SendmailDesired())
    try:
        backup = checked_backup(
            params.get("backup_files") or [], backend.backup_dir, backend.files(facts)
        )
    except ValueError as exc:
        raise SendmailFactsError(f"{exc}; nothing was changed") from None
    pending = restore_changes(backup)
    result: dict[str, Any] = {
        "changed": bool(pending),
        "restored": [path for path, _now, _after in pending],
        "mc_path": backend.mc_path,
        "warnings": [],
    }
    if diff:
        result["diff"] = restore_diff(pending)
    if check_mode or not pending:
        return result
    backend.reloaded = bool(backend.restart)  # a running daemon reads the files put back
    try:
        restore_backup(backend, backup)
    except ValueError as exc:
        raise SendmailFactsError(str(exc)) from None
    return result
