"""Postfix relay closure, the backend of `modules/postfix_relay.py`: the run as the module
drives it, over the Postfix modules (each standard library only, Python 3.7+):

* postfix_validate.py (pure): every option checked and normalised before anything runs;
* postfix_facts.py (reads): the effective configuration, main.cf plus every master.cf
  service override (`postconf -P`, `postconf -M`) and the lookup tables, with origins;
* postfix_plan.py (pure): the rule table (relay_backend.Rule: id, check, fix, source), with
  the domain rule in postfix_domains.py, the master.cf rule in postfix_overrides.py and their
  shared vocabulary (changes, the plan, restriction lists) in postfix_change.py;
* postfix_apply.py (writes): backup, `postconf -e` / `postconf -P`, `postfix check`,
  reload, and restore on any failure.

`PostfixBackend` is Postfix's implementation of relay_backend.MtaBackend. `run` drives the
same steps through `apply_plan`, which adds what a module run on a real host needs: a lock
per instance and a pending record so that a run killed mid-change is completed by the next.
The names the tests and the module use are re-exported here (`__all__`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from command_runner import (
        CommandResult,
    )
    from postfix_apply import (
        ApplyOutcome,
        BackupPolicy,
        apply_plan,
        finish_pending,
        master_backup,
        postconf_edit,
        postconf_edit_master,
        postfix_check,
        postfix_reload,
        postfix_running,
        read_backup,
        require_valid,
        restore_backup,
        restore_files,
    )
    from postfix_change import (
        ParameterChange,
        RelayPlan,
        close_restrictions,
    )
    from postfix_facts import (
        MasterOverride,
        PostfixFacts,
        PostfixTools,
        TableContents,
        parse_master_overrides,
        parse_master_services,
        parse_parameters,
        parse_table_text,
        read_facts,
        run_command,
        split_list,
    )
    from postfix_plan import (
        RULES,
        plan_relay,
    )
    from postfix_services import (
        smtp_listeners,
    )
    from postfix_validate import (
        DOMAIN_CLASSES,
        INBOUND_CLASS_CHOICES,
        RELAY_REFUSALS,
        ApplyError,
        DesiredRelayState,
        InputError,
        PlanError,
        PostfixCommandError,
        RelayConfigError,
        desired_state,
        validate_config_path,
        validate_domain,
        validate_network,
    )
    from relay_backend import (
        Backup,
        removal_refusal,
    )
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.command_runner import (
            CommandResult,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_apply import (
            ApplyOutcome,
            BackupPolicy,
            apply_plan,
            finish_pending,
            master_backup,
            postconf_edit,
            postconf_edit_master,
            postfix_check,
            postfix_reload,
            postfix_running,
            read_backup,
            require_valid,
            restore_backup,
            restore_files,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_change import (
            ParameterChange,
            RelayPlan,
            close_restrictions,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            MasterOverride,
            PostfixFacts,
            PostfixTools,
            TableContents,
            parse_master_overrides,
            parse_master_services,
            parse_parameters,
            parse_table_text,
            read_facts,
            run_command,
            split_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_plan import (
            RULES,
            plan_relay,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_services import (
            smtp_listeners,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            DOMAIN_CLASSES,
            INBOUND_CLASS_CHOICES,
            RELAY_REFUSALS,
            ApplyError,
            DesiredRelayState,
            InputError,
            PlanError,
            PostfixCommandError,
            RelayConfigError,
            desired_state,
            validate_config_path,
            validate_domain,
            validate_network,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Backup,
            removal_refusal,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from command_runner import (
            CommandResult,
        )
        from postfix_apply import (
            ApplyOutcome,
            BackupPolicy,
            apply_plan,
            finish_pending,
            master_backup,
            postconf_edit,
            postconf_edit_master,
            postfix_check,
            postfix_reload,
            postfix_running,
            read_backup,
            require_valid,
            restore_backup,
            restore_files,
        )
        from postfix_change import (
            ParameterChange,
            RelayPlan,
            close_restrictions,
        )
        from postfix_facts import (
            MasterOverride,
            PostfixFacts,
            PostfixTools,
            TableContents,
            parse_master_overrides,
            parse_master_services,
            parse_parameters,
            parse_table_text,
            read_facts,
            run_command,
            split_list,
        )
        from postfix_plan import (
            RULES,
            plan_relay,
        )
        from postfix_services import (
            smtp_listeners,
        )
        from postfix_validate import (
            DOMAIN_CLASSES,
            INBOUND_CLASS_CHOICES,
            RELAY_REFUSALS,
            ApplyError,
            DesiredRelayState,
            InputError,
            PlanError,
            PostfixCommandError,
            RelayConfigError,
            desired_state,
            validate_config_path,
            validate_domain,
            validate_network,
        )
        from relay_backend import (
            Backup,
            removal_refusal,
        )

__all__ = [
    "DOMAIN_CLASSES",
    "INBOUND_CLASS_CHOICES",
    "RELAY_REFUSALS",
    "RULES",
    "ApplyError",
    "ApplyOutcome",
    "Backup",
    "BackupPolicy",
    "CommandResult",
    "DesiredRelayState",
    "InputError",
    "MasterOverride",
    "ParameterChange",
    "PlanError",
    "PostfixBackend",
    "PostfixCommandError",
    "PostfixFacts",
    "PostfixTools",
    "RelayConfigError",
    "RelayPlan",
    "RunResult",
    "RunSettings",
    "TableContents",
    "apply_plan",
    "close_restrictions",
    "desired_state",
    "finish_pending",
    "master_backup",
    "parse_master_overrides",
    "parse_master_services",
    "parse_parameters",
    "parse_table_text",
    "plan_relay",
    "postconf_edit",
    "postconf_edit_master",
    "postfix_check",
    "postfix_reload",
    "postfix_running",
    "read_backup",
    "read_facts",
    "removal_refusal",
    "require_valid",
    "restore_backup",
    "restore_files",
    "run",
    "run_command",
    "run_settings",
    "split_list",
    "validate_config_path",
    "validate_domain",
    "validate_network",
]


@dataclass
class RunResult:
    """Everything the module returns (see RETURN in modules/postfix_relay.py)."""

    changed: bool
    config_dir: str
    main_cf: str
    changes: list[dict[str, object]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    backup_file: str | None = None
    restored_from: str | None = None
    reloaded: bool = False
    values: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    diff: dict[str, str] | None = None
    removals: list[str] = field(default_factory=list)
    listeners: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        result: dict[str, object] = {
            "changed": self.changed,
            "config_dir": self.config_dir,
            "main_cf": self.main_cf,
            "changes": self.changes,
            "backup_file": self.backup_file,
            "restored_from": self.restored_from,
            "reloaded": self.reloaded,
            "relay_parameters": self.values,
            "messages": self.messages,
            "removals": self.removals,
            "listeners": self.listeners,
        }
        if self.diff is not None:
            result["diff"] = self.diff
        return result


@dataclass(frozen=True)
class RunSettings:
    """The options that say where and how to act (validated)."""

    state: str
    config_dir: str
    backup_dir: str
    backup_keep: int
    backup_file: str | None
    check_mode: bool
    want_diff: bool


def run_settings(options: Mapping[str, object], check_mode: bool, want_diff: bool) -> RunSettings:
    """Validate the options that say where to act."""
    state = options.get("state", "present")
    if state not in ("present", "restored"):
        raise InputError("state", state, "is not present or restored")
    config_dir = validate_config_path("config_dir", options.get("config_dir", "/etc/postfix"))
    backup_dir_option = options.get("backup_dir")
    backup_dir = (
        os.path.join(config_dir, "relayguard-backups")
        if backup_dir_option is None
        else validate_config_path("backup_dir", backup_dir_option)
    )
    keep = options.get("backup_keep", 10)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 1000:
        raise InputError("backup_keep", keep, "is not a whole number from 1 to 1000")
    backup_file_option = options.get("backup_file")
    backup_file = None
    if backup_file_option is not None:
        if isinstance(backup_file_option, str) and "/" not in backup_file_option:
            backup_file_option = os.path.join(backup_dir, backup_file_option)
        backup_file = validate_config_path("backup_file", backup_file_option)
    if state == "restored" and backup_file is None:
        raise InputError("backup_file", None, "is required when state is restored")
    return RunSettings(str(state), config_dir, backup_dir, keep, backup_file, check_mode, want_diff)


def run(
    options: Mapping[str, object],
    check_mode: bool,
    want_diff: bool,
    tools_factory: Callable[[], PostfixTools] = PostfixTools.locate,
) -> RunResult:
    """Validate every option, then plan and (unless check mode) apply. The module's body."""
    settings = run_settings(options, check_mode, want_diff)
    desired = desired_state(options) if settings.state == "present" else None
    tools = tools_factory()
    backups = BackupPolicy(settings.backup_dir, settings.backup_keep)
    if desired is None:
        return _run_restore(tools, settings, backups)
    return _run_present(tools, settings, desired, backups)


def _run_present(
    tools: PostfixTools, settings: RunSettings, desired: DesiredRelayState, backups: BackupPolicy
) -> RunResult:
    lookups = _lookups(desired)
    facts = read_facts(tools, settings.config_dir, lookups)
    plan = plan_relay(facts, desired)
    result = RunResult(
        changed=plan.changed,
        config_dir=settings.config_dir,
        main_cf=facts.main_cf,
        changes=[change.as_dict() for change in plan.changes],
        warnings=list(plan.warnings),
        values=plan.values_after(),
        removals=list(plan.removals()),
        listeners=[listener.as_dict() for listener in smtp_listeners(facts)],
    )
    refusal = removal_refusal(plan.removals(), True, desired.allow_removals)
    if refusal and settings.check_mode:
        result.warnings.append(refusal.replace("refused in enforce mode", "an enforce run refuses"))
    elif refusal:
        require_valid(tools, settings.config_dir)  # a broken main.cf is the first problem
        raise PlanError(refusal)
    if settings.want_diff:
        result.diff = plan.diff(facts.main_cf)
    pending = backups.pending()
    if pending is not None:
        result.changed = True
        result.messages.append(
            "an earlier run wrote main.cf but did not finish validating and reloading it"
        )
    if settings.check_mode or not result.changed:
        return result
    if pending is not None:
        outcome = finish_pending(tools, settings.config_dir, backups)
        result.messages.extend(outcome.messages)
        result.reloaded = outcome.reloaded
        result.backup_file = outcome.backup_file
        facts = read_facts(tools, settings.config_dir, lookups)
        plan = plan_relay(facts, desired)
        if not plan.changed:
            return result

    backend = PostfixBackend(tools, settings.config_dir, backups)
    outcome = apply_plan(tools, facts, plan, backups, lambda: backend.verify(desired))
    result.backup_file = outcome.backup_file
    result.reloaded = outcome.reloaded
    result.messages.extend(outcome.messages)
    return result


def _run_restore(tools: PostfixTools, settings: RunSettings, backups: BackupPolicy) -> RunResult:
    backup_file = settings.backup_file
    if backup_file is None:  # run_settings requires backup_file for state=restored
        raise RelayConfigError("backup_file is required with state=restored")
    main_cf = os.path.join(settings.config_dir, "main.cf")
    if not os.path.isfile(main_cf):
        raise PostfixCommandError(f"config_dir {settings.config_dir} has no main.cf")
    wanted = read_backup("backup_file", backup_file)
    with open(main_cf, "rb") as handle:
        current = handle.read()
    result = RunResult(
        changed=wanted != current or _master_differs(settings.config_dir, backup_file),
        config_dir=settings.config_dir,
        main_cf=main_cf,
        restored_from=backup_file,
    )
    if settings.want_diff:
        result.diff = {
            "before": current.decode("utf-8", "replace"),
            "after": wanted.decode("utf-8", "replace"),
            "before_header": main_cf,
            "after_header": f"{main_cf} (from {backup_file})",
        }
    if settings.check_mode or not result.changed:
        return result
    outcome = restore_backup(tools, settings.config_dir, backup_file, backups)
    result.backup_file = outcome.backup_file
    result.reloaded = outcome.reloaded
    return result


def _master_differs(config_dir: str, backup_file: str) -> bool:
    """Whether the master.cf copied with `backup_file` differs from master.cf now."""
    copy = master_backup(backup_file)
    if not os.path.basename(backup_file).startswith("main.cf.") or not os.path.isfile(copy):
        return False
    with open(os.path.join(config_dir, "master.cf"), "rb") as handle:
        return read_backup("backup_file", copy) != handle.read()


def _lookups(desired: DesiredRelayState) -> tuple[str, ...]:
    """The domains whose presence in the domain-class tables `postmap -q` checks."""
    return (*(desired.inbound_domains or ()), *desired.partner_domains)


class PostfixBackend:
    """Postfix as a relay_backend.MtaBackend: one instance (`config_dir`)."""

    name = "postfix"

    def __init__(self, tools: PostfixTools, config_dir: str, backups: BackupPolicy) -> None:
        self.tools = tools
        self.config_dir = config_dir
        self.backups = backups

    def facts(self, desired: DesiredRelayState) -> PostfixFacts:
        return read_facts(self.tools, self.config_dir, _lookups(desired))

    def plan(self, facts: PostfixFacts, desired: DesiredRelayState) -> RelayPlan:
        return plan_relay(facts, desired)

    def backup(self, facts: PostfixFacts) -> Backup:
        copy = self.backups.create(facts.main_cf)
        files = [(facts.main_cf, copy)]
        if os.path.isfile(master_backup(copy)):
            files.append((facts.master_cf, master_backup(copy)))
        return Backup(tuple(files))

    def apply(self, facts: PostfixFacts, plan: RelayPlan) -> None:
        if plan.settings():
            postconf_edit(self.tools, self.config_dir, plan.settings())
        postconf_edit_master(self.tools, self.config_dir, plan.override_settings())

    def validate(self, facts: PostfixFacts) -> str | None:
        check = postfix_check(self.tools, self.config_dir)
        return None if check.returncode == 0 else check.summary()

    def reload(self, facts: PostfixFacts) -> bool:
        if not postfix_running(self.tools, self.config_dir):
            return False
        result = postfix_reload(self.tools, self.config_dir)
        if result.returncode != 0:
            raise PostfixCommandError(f"postfix reload failed: {result.summary()}")
        return True

    def verify(self, desired: DesiredRelayState) -> str | None:
        after = plan_relay(self.facts(desired), desired)
        if after.changes:
            return "still to change: " + ", ".join(c.key for c in after.changes)
        return None

    def restore(self, backup: Backup) -> None:
        if backup.primary is not None:
            restore_files(backup.primary, os.path.join(self.config_dir, "main.cf"))
        if postfix_running(self.tools, self.config_dir):
            postfix_reload(self.tools, self.config_dir)
