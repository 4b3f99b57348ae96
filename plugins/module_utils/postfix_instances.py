"""Postfix relay closure, multi-instance hosts (pure): which instances a run manages, and each
instance's relay policy.

MULTI_INSTANCE_README / postmulti(1): the primary instance's main.cf lists the secondary
instances' configuration directories in `multi_instance_directories`; each secondary has its
own main.cf and master.cf (`multi_instance_name`, `multi_instance_enable`) and is run, checked
and reloaded as `postfix -c DIR ...`. An open relay on any of them is the host's open relay,
so a run that manages only the primary says which instances it left alone.

Options: `instances` is `primary` (config_dir only; the others are named in a warning),
`all` (config_dir and every directory of its multi_instance_directories) or a list of those
directories; `instance_options` maps a directory to the relay-policy options that differ
there (an outbound-only instance has other inbound domains than the MX).

Standard library only (Python 3.7+).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from postfix_facts import PostfixFacts, split_list
    from postfix_validate import InputError, PostfixCommandError, validate_config_path
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            PostfixFacts,
            split_list,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            InputError,
            PostfixCommandError,
            validate_config_path,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from postfix_facts import PostfixFacts, split_list
        from postfix_validate import InputError, PostfixCommandError, validate_config_path

INSTANCE_MODES = ("primary", "all")
# The relay-policy options an instance may set differently (instance_options).
INSTANCE_POLICY_OPTIONS = (
    "relay_allowed_networks",
    "inbound_domains",
    "inbound_domain_class",
    "prune_domains",
    "relay_refusal",
    "relay_authenticated",
    "relay_partner_domains",
    "relay_allow_removals",
)


@dataclass(frozen=True)
class InstanceSelection:
    """`mode` primary or all, or `listed` directories."""

    mode: str
    listed: tuple[str, ...] = ()


def validate_instances(value: object) -> InstanceSelection:
    """instances: primary, all, or a non-empty list of configuration directories."""
    if isinstance(value, str) and value in INSTANCE_MODES:
        return InstanceSelection(value)
    if isinstance(value, (list, tuple)) and value:
        listed: list[str] = []
        for index, item in enumerate(value):
            path = validate_config_path(f"instances[{index}]", item)
            if path not in listed:
                listed.append(path)
        return InstanceSelection("listed", tuple(listed))
    raise InputError("instances", value, "is not primary, all or a list of config directories")


def validate_instance_options(value: object) -> dict[str, dict[str, object]]:
    """instance_options: {config directory: {relay-policy option: value}}; the values are
    checked by desired_state when merged over the task's options."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError("instance_options", value, "is not a dictionary")
    checked: dict[str, dict[str, object]] = {}
    for key, options in value.items():
        path = validate_config_path("instance_options key", key)
        if not isinstance(options, dict):
            raise InputError(f"instance_options[{key}]", options, "is not a dictionary")
        unknown = sorted(str(name) for name in options if name not in INSTANCE_POLICY_OPTIONS)
        if unknown:
            raise InputError(
                f"instance_options[{key}]",
                unknown,
                f"names options that are not per instance ({', '.join(INSTANCE_POLICY_OPTIONS)})",
            )
        checked[path] = dict(options)
    return checked


def secondary_dirs(primary: PostfixFacts) -> list[str]:
    """The primary's multi_instance_directories, in order (postconf(5)); an entry that is
    not a plain absolute path is the host's configuration problem, named."""
    dirs: list[str] = []
    for entry in split_list(primary.expanded.get("multi_instance_directories", "")):
        try:
            path = validate_config_path("multi_instance_directories", entry)
        except InputError as exc:
            raise PostfixCommandError(f"{primary.main_cf}: {exc}") from None
        if path not in dirs and path != primary.config_dir:
            dirs.append(path)
    return dirs


def chosen_dirs(
    primary_dir: str, secondaries: Sequence[str], selection: InstanceSelection
) -> tuple[list[str], list[str]]:
    """(the directories this run manages, in order; the instances it leaves alone)."""
    every = [primary_dir, *secondaries]
    if selection.mode == "primary":
        return [primary_dir], list(secondaries)
    if selection.mode == "all":
        return every, []
    strangers = [d for d in selection.listed if d not in every]
    if strangers:
        raise InputError(
            "instances",
            strangers,
            f"are neither config_dir nor in its multi_instance_directories ({', '.join(every)})",
        )
    return [d for d in every if d in selection.listed], [
        d for d in every if d not in selection.listed
    ]


def instance_backup_dir(backup_dir: str, primary_dir: str, config_dir: str, explicit: bool) -> str:
    """Where an instance's backups go: its own config directory's relayguard-backups, or,
    when backup_dir is given, a subdirectory of it per secondary instance."""
    if config_dir == primary_dir:
        return backup_dir
    if explicit:
        return f"{backup_dir}/instance{config_dir.replace('/', '_')}"
    return f"{config_dir}/relayguard-backups"


def instance_options_for(
    options: Mapping[str, object], per_instance: Mapping[str, Mapping[str, object]], config_dir: str
) -> dict[str, object]:
    """The task's options with the instance's own relay policy over them."""
    return {**options, **per_instance.get(config_dir, {})}


def unmanaged_warning(names: Mapping[str, str], unmanaged: Sequence[str]) -> str:
    """The warning that names the postmulti instances a run left alone (`names`: their
    multi_instance_name, where it could be read)."""
    named = [f"{d} ({names[d]})" if names.get(d) else d for d in unmanaged]
    return (
        "multi_instance_directories lists instances this run does not manage: "
        f"{', '.join(named)}; an open relay there is still open (instances: all manages them)"
    )


def instance_label(facts: PostfixFacts) -> dict[str, object]:
    """An instance's name and whether postmulti starts it (multi_instance_enable)."""
    return {
        "name": facts.expanded.get("multi_instance_name", ""),
        "enabled": facts.expanded.get("multi_instance_enable", "no") == "yes",
    }
