"""Postfix relay closure, the backend of `modules/postfix_relay.py`: the run as the module
drives it, over the Postfix modules (each standard library only, Python 3.7+):

* postfix_validate.py (pure): every option checked and normalised before anything runs;
* postfix_facts.py (reads): the effective configuration, main.cf plus every master.cf
  service override (`postconf -P`, `postconf -M`) and the lookup tables, with origins;
* postfix_plan.py (pure): the rule table (relay_backend.Rule: id, check, fix, source), with
  the domain rule in postfix_domains.py, the master.cf rule in postfix_overrides.py (with
  postfix_services.py: the smtpd that really handles a session, postscreen's pass service
  included) and their shared vocabulary (changes, the plan, restriction lists) in
  postfix_change.py;
* postfix_instances.py (pure): which instances of a multi-instance (postmulti) host the run
  manages, and each one's relay policy;
* postfix_apply.py (writes): backup, `postconf -e` / `postconf -P`, `postfix check`,
  reload, and restore on any failure.

`PostfixBackend` is Postfix's implementation of relay_backend.MtaBackend. `run` drives the
same steps through `apply_plan`, which adds what a module run on a real host needs: a lock
per instance and a pending record so that a run killed mid-change is completed by the next.
On a multi-instance host every managed instance is planned first, then each is applied on
its own; when one fails, the ones already changed are restored.
The names the tests and the module use are re-exported here (`__all__`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

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
        run_capture,
        run_command,
        split_list,
    )
    from postfix_instances import (
        InstanceSelection,
        chosen_dirs,
        instance_backup_dir,
        instance_label,
        instance_options_for,
        secondary_dirs,
        unmanaged_warning,
        validate_instance_options,
        validate_instances,
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
        rule_results,
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
            run_capture,
            run_command,
            split_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_instances import (
            InstanceSelection,
            chosen_dirs,
            instance_backup_dir,
            instance_label,
            instance_options_for,
            secondary_dirs,
            unmanaged_warning,
            validate_instance_options,
            validate_instances,
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
            rule_results,
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
            run_capture,
            run_command,
            split_list,
        )
        from postfix_instances import (
            InstanceSelection,
            chosen_dirs,
            instance_backup_dir,
            instance_label,
            instance_options_for,
            secondary_dirs,
            unmanaged_warning,
            validate_instance_options,
            validate_instances,
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
            rule_results,
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
    diff: dict[str, str] | list[dict[str, str]] | None = None
    removals: list[str] = field(default_factory=list)
    listeners: list[dict[str, str]] = field(default_factory=list)
    instances: list[dict[str, object]] = field(default_factory=list)
    rules: list[dict[str, str]] = field(default_factory=list)

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
            "instances": self.instances,
            "rules": self.rules,
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
    instances: InstanceSelection = field(default_factory=lambda: InstanceSelection("primary"))
    instance_options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    backup_dir_explicit: bool = False


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
    per_instance = validate_instance_options(options.get("instance_options"))
    for path, own in per_instance.items():  # each instance's policy, checked before any read
        try:
            desired_state(instance_options_for(options, {path: own}, path))
        except InputError as exc:
            raise InputError(
                f"instance_options[{path}].{exc.field}", exc.value, exc.problem
            ) from None
    return RunSettings(
        str(state),
        config_dir,
        backup_dir,
        keep,
        backup_file,
        check_mode,
        want_diff,
        validate_instances(options.get("instances", "primary")),
        per_instance,
        backup_dir_option is not None,
    )


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
    return _run_present(tools, settings, options, backups)


@dataclass
class InstanceRun:
    """One instance of the run: its policy, what was read, the plan, where backups go."""

    config_dir: str
    desired: DesiredRelayState
    facts: PostfixFacts
    plan: RelayPlan
    backups: BackupPolicy
    primary: bool
    outcome: ApplyOutcome | None = None

    def replan(self, tools: PostfixTools) -> None:
        self.facts = read_facts(tools, self.config_dir, _lookups(self.desired))
        self.plan = plan_relay(self.facts, self.desired)

    def report(self) -> dict[str, object]:
        label = instance_label(self.facts)
        if self.primary:
            label["enabled"] = True  # postmulti always starts the primary instance
        outcome = self.outcome
        return {
            "config_dir": self.config_dir,
            **label,
            "changed": self.plan.changed or self.backups.pending() is not None,
            "changes": [_change_dict(self, c) for c in self.plan.changes],
            "removals": list(self.plan.removals()),
            "warnings": list(self.plan.warnings),
            "backup_file": outcome.backup_file if outcome else None,
            "reloaded": outcome.reloaded if outcome else False,
            "listeners": [listener.as_dict() for listener in smtp_listeners(self.facts)],
        }


def _rules(run: InstanceRun) -> list[dict[str, str]]:
    """Every rule of postfix_plan.RULES on this instance as read (fail: the reasons of its
    planned changes), for the report."""
    reasons: dict[str, list[str]] = {}
    for change in run.plan.changes:
        reasons.setdefault(change.rule, []).append(change.reason)
    findings = [(rule, "; ".join(texts)) for rule, texts in reasons.items()]
    return rule_results(RULES, findings, run.facts.main_cf)


def _change_dict(run: InstanceRun, change: ParameterChange) -> dict[str, object]:
    return {**change.as_dict(), "config_dir": run.config_dir}


def _plan_instances(
    tools: PostfixTools, settings: RunSettings, options: Mapping[str, object], backups: BackupPolicy
) -> tuple[list[InstanceRun], list[str]]:
    """Read and plan every instance the run manages (the primary first); the warnings name
    the postmulti instances it leaves alone (MULTI_INSTANCE_README)."""
    primary_dir = settings.config_dir
    per_instance = settings.instance_options
    desired = desired_state(instance_options_for(options, per_instance, primary_dir))
    primary = read_facts(tools, primary_dir, _lookups(desired))
    dirs, unmanaged = chosen_dirs(primary_dir, secondary_dirs(primary), settings.instances)
    strangers = sorted(set(per_instance) - set(dirs))
    if strangers:
        raise InputError("instance_options", strangers, "names instances this run does not manage")
    runs: list[InstanceRun] = []
    for config_dir in dirs:
        if config_dir == primary_dir:
            facts, policy, own = primary, backups, desired
        else:
            own = desired_state(instance_options_for(options, per_instance, config_dir))
            facts = read_facts(tools, config_dir, _lookups(own))
            where = instance_backup_dir(
                settings.backup_dir, primary_dir, config_dir, settings.backup_dir_explicit
            )
            policy = BackupPolicy(where, settings.backup_keep)
        try:
            plan = plan_relay(facts, own)
        except PlanError as exc:  # name the instance when the run manages several
            if settings.instances.mode == "primary":
                raise
            raise PlanError(f"{config_dir}: {exc}") from None
        runs.append(InstanceRun(config_dir, own, facts, plan, policy, config_dir == primary_dir))
    names = {d: _instance_name(tools, d) for d in unmanaged}
    warnings = [unmanaged_warning(names, unmanaged)] if unmanaged else []
    return runs, warnings


def _instance_name(tools: PostfixTools, config_dir: str) -> str:
    """An instance's multi_instance_name ("" when it cannot be read: the warning that names
    the instance is what matters)."""
    done = run_capture([tools.postconf, "-c", config_dir, "-h", "multi_instance_name"])
    return done.stdout.strip() if done.returncode == 0 else ""


def _run_present(
    tools: PostfixTools, settings: RunSettings, options: Mapping[str, object], backups: BackupPolicy
) -> RunResult:
    runs, warnings = _plan_instances(tools, settings, options, backups)
    several = len(runs) > 1 or settings.instances.mode != "primary"
    first = runs[0]
    result = RunResult(
        changed=any(r.plan.changed for r in runs),
        config_dir=settings.config_dir,
        main_cf=first.facts.main_cf,
        changes=[_change_dict(r, c) for r in runs for c in r.plan.changes],
        warnings=[*warnings, *_prefixed(runs, several, lambda r: r.plan.warnings)],
        values=first.plan.values_after() if first.primary else {},
        removals=_prefixed(runs, several, lambda r: r.plan.removals()),
        listeners=[listener.as_dict() for listener in smtp_listeners(first.facts)],
        rules=[rule for r in runs for rule in _rules(r)],
    )
    _refuse_removals(tools, runs, several, result, settings.check_mode)
    if settings.want_diff:
        diffs = [r.plan.diff(r.facts.main_cf) for r in runs]
        result.diff = diffs[0] if len(diffs) == 1 else diffs
    if any(r.backups.pending() is not None for r in runs):
        result.changed = True
        result.messages.append(
            "an earlier run wrote main.cf but did not finish validating and reloading it"
        )
    if not settings.check_mode and result.changed:
        _apply_instances(tools, runs, several, result)
    result.instances = [r.report() for r in runs] if several else []
    return result


def _prefixed(
    runs: Sequence[InstanceRun], several: bool, items: Callable[[InstanceRun], Sequence[str]]
) -> list[str]:
    """Each run's items, prefixed with its config_dir when the run manages several."""
    return [f"{r.config_dir}: {item}" if several else item for r in runs for item in items(r)]


def _refuse_removals(
    tools: PostfixTools,
    runs: Sequence[InstanceRun],
    several: bool,
    result: RunResult,
    check_mode: bool,
) -> None:
    """Enforce refuses, before anything is written on any instance, a plan that removes a
    destination or network without relay_allow_removals (each instance's own policy)."""
    refusals = []
    for run in runs:
        refusal = removal_refusal(run.plan.removals(), True, run.desired.allow_removals)
        if refusal:
            refusals.append(f"{run.config_dir}: {refusal}" if several else refusal)
    if not refusals:
        return
    if check_mode:
        result.warnings.extend(
            r.replace("refused in enforce mode", "an enforce run refuses") for r in refusals
        )
        return
    for run in runs:
        require_valid(tools, run.config_dir)  # a broken main.cf is the first problem
    raise PlanError("; ".join(refusals))


def _apply_instances(
    tools: PostfixTools, runs: Sequence[InstanceRun], several: bool, result: RunResult
) -> None:
    """Apply each instance in turn (backup, write, `postfix -c DIR check`, verify, reload);
    when one fails, the instances this run already changed are restored too, so the host is
    left as it was (all or nothing)."""
    done: list[InstanceRun] = []
    for run in runs:
        try:
            _apply_one(tools, run, result)
        except ApplyError as exc:
            if not several:
                raise
            undone = _undo(tools, done)
            raise ApplyError(
                f"{run.config_dir}: {exc}{undone}",
                rolled_back=exc.rolled_back and not undone.count("FAILED"),
                backup_file=exc.backup_file,
                wrote=exc.wrote or bool(done),
            ) from None
        if run.outcome is not None:
            done.append(run)
    first = runs[0]
    if first.outcome is not None and first.primary:
        result.backup_file = first.outcome.backup_file
        result.reloaded = first.outcome.reloaded
    result.reloaded = result.reloaded or any(r.outcome.reloaded for r in done if r.outcome)


def _apply_one(tools: PostfixTools, run: InstanceRun, result: RunResult) -> None:
    pending = run.backups.pending()
    if pending is None and not run.plan.changed:
        return
    if pending is not None:
        outcome = finish_pending(tools, run.config_dir, run.backups)
        result.messages.extend(outcome.messages)
        run.outcome = outcome
        run.replan(tools)
        if not run.plan.changed:
            return
    backend = PostfixBackend(tools, run.config_dir, run.backups)
    desired = run.desired
    outcome = apply_plan(tools, run.facts, run.plan, run.backups, lambda: backend.verify(desired))
    result.messages.extend(outcome.messages)
    run.outcome = outcome


def _undo(tools: PostfixTools, done: Sequence[InstanceRun]) -> str:
    """Restore the instances changed earlier in this run; say what happened to each."""
    notes = []
    for run in reversed(done):
        backup = run.outcome.backup_file if run.outcome else None
        if backup is None:
            continue
        try:
            restore_backup(tools, run.config_dir, backup, run.backups)
            notes.append(f"{run.config_dir} restored from {backup}")
        except RelayConfigError as exc:
            notes.append(f"restoring {run.config_dir} from {backup} FAILED: {exc}")
    return f"; the instances changed before it: {'; '.join(notes)}" if notes else ""


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
