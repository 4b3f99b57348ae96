"""Action plugin relay_inputs (internal): check a host's inputs before secure-relay.yml starts
its record — the relay role's argument spec (roles/relay/meta/argument_specs.yml, entry point
preflight: types, choices) and the values no spec can say (CIDRs, domain names, the change
window, the Exchange credentials), in one task on the controller.

It replaces the role's own argument check (a task that templated the whole spec as its
arguments for every host) and an assert of some forty Jinja expressions: each task costs every
host a forked worker (docs/performance.md). A host whose inputs are not usable fails here with
a message naming each problem; nothing has been probed or changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

SPEC_FILE = Path(__file__).resolve().parents[2] / "roles" / "relay" / "meta" / "argument_specs.yml"
ENTRY_POINT = "preflight"
FAMILIES = ("exchange", "postfix", "exim", "sendmail")
CIDR = re.compile(r"^[0-9a-fA-F:.\[\]]+(/[0-9]{1,3})?$")
DOMAIN = re.compile(r"^([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$")
# an inbound domain may start with a dot: its subdomains (Postfix's relay_domains convention)
INBOUND_DOMAIN = re.compile(r"^\.?([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$")
HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
# the name under which a value is shown, and what it must be
HINTS = {
    "relay_allowed_networks": "CIDRs, required",
    "relay_inbound_domains": "domains, required",
    "relay_partner_domains": "domains",
    "relay_authenticated": "keep, true or false",
    "relay_allow_removals": "true or false",
    "relay_mode": "enforce or audit",
}
# Python's YAML C loader when the system has it (PyYAML's pure loader otherwise)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def preflight_spec(path: Path = SPEC_FILE) -> dict[str, Any]:
    """The relay role's argument spec for its preflight entry point."""
    specs = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 (safe loader)
    return dict(specs["argument_specs"][ENTRY_POINT]["options"])


def family_of(values: Mapping[str, Any]) -> str:
    """The platform's family, else the family its inventory group names, else unknown."""
    platforms = values.get("relay_platform_families") or {}
    platform = values.get("relay_platform")
    if platform in platforms:
        return str(platforms[platform])
    groups = values.get("relay_group_families") or {}
    for group in values.get("group_names") or []:
        if group in groups:
            return str(groups[group])
    return "unknown"


def _bad(items: Any, pattern: re.Pattern[str]) -> list[str]:
    return [str(i) for i in items or [] if not isinstance(i, str) or not pattern.match(i)]


def value_problems(values: Mapping[str, Any], family: str) -> list[str]:
    """What is wrong with the values the argument spec cannot judge, one phrase each."""
    problems = []
    if values.get("relay_mode") not in ("enforce", "audit"):
        problems.append(f"relay_mode={values.get('relay_mode')} (enforce or audit)")
    if family not in FAMILIES:
        groups = ", ".join(values.get("relay_group_families") or {})
        problems.append(
            f"platform={values.get('relay_platform')}: no family (put the host in one of the "
            f"groups {groups})"
        )
    for name, pattern in (
        ("relay_allowed_networks", CIDR),
        ("relay_inbound_domains", INBOUND_DOMAIN),
        ("relay_partner_domains", DOMAIN),
    ):
        items = values.get(name) or []
        if name != "relay_partner_domains" and not items:
            problems.append(f"{name}={items} ({HINTS[name]})")
        elif bad := _bad(items, pattern):
            problems.append(f"{name}: {', '.join(bad)} is not valid ({HINTS[name]})")
    problems.extend(_window_problems(values))
    authenticated = values.get("relay_authenticated")
    if not isinstance(authenticated, bool) and str(authenticated).lower() not in (
        "keep",
        "true",
        "false",
    ):
        problems.append(f"relay_authenticated={authenticated} ({HINTS['relay_authenticated']})")
    if not isinstance(values.get("relay_allow_removals"), bool):
        removals = values.get("relay_allow_removals")
        problems.append(f"relay_allow_removals={removals} ({HINTS['relay_allow_removals']})")
    return problems


def _window_problems(values: Mapping[str, Any]) -> list[str]:
    start = str(values.get("relay_change_window_start") or "")
    end = str(values.get("relay_change_window_end") or "")
    if bool(start) != bool(end) or any(t and not HHMM.match(t) for t in (start, end)):
        return [f"change window {start}-{end} (both HH:MM UTC or neither)"]
    return []


def credentials_missing(values: Mapping[str, Any], family: str) -> bool:
    """Exchange is managed over WinRM (or SMB) as ansible_user: it needs a password, unless
    Kerberos or a certificate authenticates."""
    if family != "exchange":
        return False
    if not values.get("ansible_user"):
        return True
    transport = values.get("ansible_winrm_transport") or ""
    return not values.get("ansible_password") and transport not in ("kerberos", "certificate")


class ActionModule(ActionBase):  # type: ignore[misc]
    """Fail this host, naming each problem, unless its inputs are usable."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(
        self, tmp: str | None = None, task_vars: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        host = str(task_vars.get("inventory_hostname", ""))
        spec = preflight_spec()
        extra = ("relay_platform_families", "relay_group_families", "relay_platform",
                 "ansible_user", "ansible_password", "ansible_winrm_transport")  # fmt: skip
        raw = {n: task_vars[n] for n in (*spec, *extra) if n in task_vars}
        values = dict(self._templar.template(raw))
        values["group_names"] = task_vars.get("group_names") or []
        checked = ArgumentSpecValidator(spec).validate(
            {n: values[n] for n in spec if n in values}, validate_role_argument_spec=True
        )
        if checked.error_messages:
            result.update(
                failed=True,
                msg=f"{host}: validation of arguments failed:\n"
                + "\n".join(checked.error_messages),
                argument_errors=checked.error_messages,
            )
            return result
        values.update(checked.validated_parameters)
        family = family_of(values)
        problems = value_problems(values, family)
        if problems:
            msg = f"{host}: inputs are not usable — " + "; ".join(problems)
            result.update(failed=True, msg=msg + "; see inventory/example/group_vars")
        elif credentials_missing(values, family):
            result.update(
                failed=True,
                msg=f"{host}: no WinRM credentials (ansible_user / ansible_password); keep them "
                "in a vault-encrypted file (inventory/example/group_vars/exchange/vault.yml)",
            )
        else:
            result.update(changed=False, msg=f"{host}: inputs usable ({family})", family=family)
        return result
