"""Action plugin relay_inputs (internal): check a host's inputs before secure-relay.yml starts
its record — the relay role's argument spec (roles/relay/meta/argument_specs.yml, entry point
preflight: types, choices) and the values no spec can say (CIDRs, domain names, the change
window, the Exchange credentials), in one task on the controller.

It replaces the role's own argument check (a task that templated the whole spec as its
arguments for every host) and an assert of some forty Jinja expressions: each task costs every
host a forked worker (docs/performance.md). A host whose inputs are not usable fails here with
a message naming each problem; nothing has been probed or changed. The options of the other
families (relay_postfix_* on an Exchange host, relay_winrm_* on a Postfix host) are not read.

A usable host's result carries the start of its record (`record`: family, SMTP target, probe
targets and domain, change window, management endpoint, Exchange request), computed here from
the values just checked: preflight.yml's set_fact only copies it. Ansible compiles every Jinja
template each time a worker renders it, so the same decisions as set_fact expressions cost each
host some ninety template compilations (docs/performance.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone  # (no datetime.UTC: 2.17 controllers run Python 3.10)
from pathlib import Path
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.parsing.convert_bool import boolean
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


# option prefixes read by one family only (the others' are neither templated nor checked)
FAMILY_OPTIONS = {
    "postfix": ("relay_postfix_",),
    "exim": ("relay_exim_",),
    "sendmail": ("relay_sendmail_",),
    "exchange": ("relay_exchange_", "relay_winrm_", "relay_patch_policy"),
}


def applies(name: str, family: str) -> bool:
    """Does a host of this family read the option? (An unknown family: every option.)"""
    if family not in FAMILY_OPTIONS:
        return True
    owners = [f for f, prefixes in FAMILY_OPTIONS.items() if name.startswith(prefixes)]
    return not owners or family in owners


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


def window_open(start: str, end: str, now_hhmm: str) -> bool:
    """Is the change window (UTC "HH:MM", may cross midnight) open at now_hhmm? No window:
    always; a malformed one (refused by value_problems): never."""
    if start == "":
        return True
    if not (HHMM.match(start) and HHMM.match(end)):
        return False
    if start <= end:
        return start <= now_hhmm < end
    return now_hhmm >= start or now_hhmm < end


def _port_of(target: str) -> int:
    """The port a host:port ends with (0 without one), as Jinja's regex_search | int."""
    found = re.search(r"[0-9]+$", target)
    return int(found.group(0)) if found else 0


def probe_targets(target: str, ports: Sequence[Any]) -> list[str]:
    """The probe's targets: the SMTP target's host on every listener of relay_probe_ports when
    its own port is one of them; an endpoint on another port (a lab, a port forward) alone."""
    wanted = [int(p) for p in ports]
    if _port_of(target) not in wanted:
        return [target]
    host = re.sub(r":[0-9]+$", "", target)
    return [f"{host}:{port}" for port in wanted]


def probe_domain(local_domain: Any, inbound_domains: Sequence[Any]) -> str:
    """The domain the probe's encapsulation tests and RFC 2505 checks use: the configured one,
    else the host's first inbound domain (not a ".subdomains" entry), else none."""
    if local_domain:
        return str(local_domain)
    return next((str(d) for d in inbound_domains if not str(d).startswith(".")), "")


def management_endpoint(values: Mapping[str, Any], family: str) -> str | None:
    """What the controller connects to for management: an Exchange host's WinRM or SMB (5.5),
    or its management host's WinRM (via-management-host); a Postfix, Exim or Sendmail host's
    SSH; none for a local connection."""
    channel = values.get("relay_exchange_channel")
    via = family == "exchange" and channel == "via-management-host"
    if family != "exchange" and values.get("ansible_connection") == "local":
        return None
    if via:
        host = values["relay_exchange_management_host"]
        port = values["relay_exchange_management_port"]
    else:
        host = values["relay_management_host"]
        smb = family == "exchange" and channel == "smb"
        port = values["relay_exchange_smb_port"] if smb else values["relay_management_port"]
    host = str(host)
    return f"{'[' + host + ']' if ':' in host else host}:{port}"


def _none_if_empty(value: Any) -> Any:
    return value if value else None


def exchange_request(values: Mapping[str, Any], host: str, stamp: str) -> dict[str, Any]:
    """An Exchange host's exchange_batch options, the WinRM connection included but not its
    password (relay_exchange_batch_requests adds it at call time, never kept in a fact)."""
    v = values
    backup = f"{v['relay_exchange_backup_dir']}/{stamp}/{host}.json"
    relay = {
        "winrm_host": v["relay_winrm_host"],
        "winrm_port": int(v["relay_winrm_port"]),
        "winrm_scheme": v["relay_winrm_scheme"],
        "winrm_transport": v["relay_winrm_transport"],
        "winrm_username": v["relay_winrm_username"],
        "validate_certs": boolean(v["relay_winrm_validate_certs"], strict=False),
        "ca_path": _none_if_empty(v.get("relay_winrm_ca_path")),
        "winrm_operation_timeout": int(v["relay_winrm_operation_timeout"]),
        "winrm_read_timeout": _none_if_empty(v.get("relay_winrm_read_timeout")),
        "winrm_command_timeout": float(v["relay_winrm_command_timeout"]),
        "channel": v["relay_exchange_channel"],
        "smb_port": int(v["relay_exchange_smb_port"]),
        "management_host": _none_if_empty(v.get("relay_exchange_management_host")),
        "management_port": _none_if_empty(v.get("relay_exchange_management_port")),
        "management_username": _none_if_empty(v.get("relay_exchange_management_username")),
        "smtp_port": _port_of(str(v["relay_smtp_target"])),
        "relay_allowed_networks": list(v["relay_allowed_networks"]),
        # Exchange reads keep as false (docs/exchange.md)
        "relay_authenticated": str(v["relay_authenticated"]).lower() == "true",
        "inbound_domains": list(v["relay_inbound_domains"]),
        "reject_unknown_recipients": boolean(
            v["relay_exchange_reject_unknown_recipients"], strict=False
        ),
        "relay_connector_bindings": v["relay_exchange_connector_bindings"],
        # {computer_name} in it is filled in by exchange_batch's detect (none on Exchange 5.5)
        "relay_connector_name": v["relay_exchange_connector_name"],
        "host_name": host,
        "backup_file": backup,
    }
    return {
        "patch_policy": v["relay_patch_policy"],
        "patch_packages": v["relay_exchange_patch_packages"],
        "patch_reboot": boolean(v["relay_exchange_patch_reboot"], strict=False),
        "relay": relay,
    }


def verify_sessions(values: Mapping[str, Any], family: str, host: str) -> list[dict[str, Any]]:
    """The SMTP sessions that check, after a change, that legitimate mail still flows
    (smtp_mail_flow, DATA never sent): the allowed network relays, mail for the inbound and
    partner domains is accepted from the untrusted vantage point, an authenticated client
    relays (when relay_authenticated is true, or keep on a Postfix, Exim or Sendmail host, and
    relay_smtp_auth_user is set). Only the sessions with a check; never the password."""
    v = values
    target = str(v["relay_smtp_target"])
    timeout = float(v["relay_verify_timeout"])
    external = str(v["relay_probe_external_domain"])
    allowed = str(v.get("relay_verify_allowed_source_address") or "")
    vantage = v.get("relay_probe_source_address") or ""
    relay_test = {"mail_from": v["relay_verify_mail_from"], "rcpt_to": f"relaytest@{external}"}
    accepted = [
        {
            "name": f"mail for {kind} domain {domain} accepted",
            "mail_from": f"someone@{external}",
            "rcpt_to": f"{v['relay_verify_mailbox']}@{domain}",
        }
        for kind, name in (
            ("inbound", "relay_inbound_domains"),
            ("partner", "relay_partner_domains"),
        )
        for domain in v.get(name) or []
        if not str(domain).startswith(".")
    ]
    authenticated = str(v.get("relay_authenticated")).lower()
    user = v.get("relay_smtp_auth_user") or None
    auth = user is not None and (
        authenticated == "true" or (authenticated == "keep" and family != "exchange")
    )
    sessions = [
        {
            "name": f"from the allowed address {allowed}",
            "source_address": allowed or None,
            "checks": [{"name": f"allowed network {allowed} relays", **relay_test}]
            if allowed
            else [],
        },
        {
            "name": f"from the untrusted vantage point {vantage}",
            "source_address": vantage or None,
            "checks": accepted,
        },
        {
            "name": "authenticated relay",
            "source_address": vantage or None,
            "auth_username": user,
            "checks": [{"name": "authenticated client relays", "authenticate": True, **relay_test}]
            if auth
            else [],
        },
    ]
    common = {"host": host, "target": target, "timeout": timeout}
    return [{**common, **s} for s in sessions if s["checks"]]


def start_record(
    values: Mapping[str, Any], family: str, host: str, now: datetime, stamp: str | None
) -> dict[str, Any]:
    """The start of a host's record (preflight.yml copies it into the host's facts)."""
    target = str(values["relay_smtp_target"])
    start = str(values.get("relay_change_window_start") or "")
    end = str(values.get("relay_change_window_end") or "")
    return {
        "family": family,
        "target": target,
        "started": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window_open": window_open(start, end, now.strftime("%H:%M")),
        # what the plan reads besides (plugins/action/relay_plan.py)
        "mode": str(values["relay_mode"]),
        "force": boolean(values.get("relay_force") or False, strict=False),
        "window": [start, end],
        "probe_targets": probe_targets(target, values["relay_probe_ports"]),
        "probe_domain": probe_domain(
            values.get("relay_probe_local_domain"), values.get("relay_inbound_domains") or []
        ),
        "management_endpoint": management_endpoint(values, family),
        "verify_sessions": verify_sessions(values, family, host),
        "exchange_request": exchange_request(values, host, stamp or now.strftime("%Y%m%dT%H%M%SZ"))
        if family == "exchange"
        else None,
    }


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
        first = ("relay_platform_families", "relay_group_families", "relay_platform")
        values = dict(self._templar.template({n: task_vars[n] for n in first if n in task_vars}))
        values["group_names"] = task_vars.get("group_names") or []
        family = family_of(values)
        # the options of the host's own family and the common ones (each templated value costs a
        # Jinja compilation in every host's worker: docs/performance.md)
        extra = ("ansible_user", "ansible_password", "ansible_winrm_transport",
                 "ansible_connection", "ansible_host")  # fmt: skip
        wanted = [n for n in (*spec, *extra) if applies(n, family) and n not in values]
        values.update(self._templar.template({n: task_vars[n] for n in wanted if n in task_vars}))
        # the platform as configured: the report's for a host refused here (detection may refine it)
        result["platform"] = values.get("relay_platform")
        values.setdefault("ansible_connection", "ssh")
        values["relay_management_host"] = values.get("ansible_host") or host
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
            values["relay_management_port"] = self._management_port(task_vars, family)
            # (the run's stamp is read from localhost's variables only for the hosts that need it)
            stamp = _run_stamp(task_vars) if family == "exchange" else None
            try:
                record = start_record(values, family, host, datetime.now(timezone.utc), stamp)
            except (KeyError, TypeError, ValueError) as exc:
                msg = (
                    f"{host}: the record cannot start ({type(exc).__name__}: {exc}); "
                    "relay_inputs is the relay role's preflight and reads its defaults"
                )
                result.update(failed=True, msg=msg)
                return result
            msg = f"{host}: inputs usable ({family})"
            result.update(changed=False, msg=msg, family=family, record=record)
        return result

    def _management_port(self, task_vars: Mapping[str, Any], family: str) -> Any:
        """relay_management_port, whose default depends on the family found here."""
        if "relay_management_port" not in task_vars:
            return 5986 if family == "exchange" else 22
        templar = self._templar.copy_with_new_env(
            available_variables={**task_vars, "relay_family": family}
        )
        return templar.template(task_vars["relay_management_port"])


def _run_stamp(task_vars: Mapping[str, Any]) -> str | None:
    """The run's stamp (run.yml, on localhost): the Exchange backups' directory."""
    hostvars = task_vars.get("hostvars")
    if not isinstance(hostvars, Mapping) or "localhost" not in hostvars:
        return None
    stamp = hostvars["localhost"].get("relay_run_stamp")
    return str(stamp) if isinstance(stamp, str) and stamp else None
