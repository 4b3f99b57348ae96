"""The lab's Ansible inventory: hosts grouped by platform, secrets kept out of its text.

`inventory.yml` holds connection details only. Each host's credentials go to
`host_vars/<host>.yml` (mode 0600) next to it, which Ansible loads for that host whenever the
inventory file is used; nothing secret is in the inventory itself.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml

from relayguard.lab.fleet.layout import HostEntry, LabDir, Manifest, write_private_json
from relayguard.lab.postfix.config import InstanceLayout
from relayguard.lab.unpacked import LabMtaError
from relayguard.vocabulary import GROUP_FAMILY, Family

GROUP_ORDER = tuple(GROUP_FAMILY)


def inventory_document(lab: LabDir, manifest: Manifest) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for group in GROUP_ORDER:
        hosts = {h.name: _host_vars(lab, manifest, h) for h in manifest.hosts if h.group == group}
        if not hosts:
            continue
        entry: dict[str, Any] = {"hosts": hosts}
        if GROUP_FAMILY[group] is Family.EXCHANGE:
            entry["vars"] = {
                "ansible_connection": "winrm",
                "ansible_port": manifest.winrm_port,
                "ansible_winrm_scheme": "https",
                "ansible_winrm_transport": "ntlm",
                "ansible_winrm_server_cert_validation": "validate",
                "ansible_winrm_ca_trust_path": str(lab.ca_cert.absolute()),
            }
        else:
            entry["vars"] = {"ansible_connection": "local"}
        groups[group] = entry
    return {"all": {"vars": {"relayguard_lab": str(lab.root.absolute())}, "children": groups}}


def _host_vars(lab: LabDir, manifest: Manifest, host: HostEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ansible_host": host.address,
        "relayguard_platform": host.platform,
        "relayguard_profile": host.profile,
        "relayguard_expected_verdict": host.expected,
        "relayguard_smtp": f"{host.address}:{manifest.smtp_port}",
    }
    if host.is_postfix:
        out["relayguard_postfix_config_dir"] = str(
            InstanceLayout(lab.postfix_root(host.name).absolute()).config_dir
        )
        out["relayguard_smtp"] = f"{host.address}:25"
    elif host.is_real_server:
        root = lab.server_root(host.platform, host.name).absolute()
        out.update(_mta_vars(host, root))
        out["relayguard_smtp"] = f"{host.address}:25"
    else:
        out["relayguard_winrm"] = f"https://{host.address}:{manifest.winrm_port}/wsman"
        if host.serves_smb and manifest.smb_port:
            out["relayguard_smb"] = f"{host.address}:{manifest.smb_port}"
    return out


def _mta_vars(host: HostEntry, root: Path) -> dict[str, str]:
    """Where an Exim or Sendmail instance's files and programs are (roles/relay defaults read
    these): the configuration, the unpacked binaries, Exim's pid file, and the wrapper that
    runs the instance's sendmail as the lab runs it (lab.sendmail.instance.write_wrapper)."""
    if host.family is Family.EXIM:
        from relayguard.lab.exim.config import EximLayout
        from relayguard.lab.exim.instance import exim_binary

        layout = EximLayout(root)
        found = {"relayguard_exim_config_file": str(layout.config)}
        found["relayguard_exim_pid_file"] = str(layout.pid_file)
        with contextlib.suppress(LabMtaError):  # not unpacked: `lab up` says so when it starts it
            found["relayguard_exim_binary"] = str(exim_binary())
        return found
    from relayguard.lab.sendmail.config import SendmailLayout
    from relayguard.lab.sendmail.instance import WRAPPER, makemap_binary

    sendmail = SendmailLayout(root)
    found = {"relayguard_sendmail_config_file": str(sendmail.mc)}
    found["relayguard_sendmail_binary"] = str(sendmail.file(WRAPPER))
    with contextlib.suppress(LabMtaError):
        found["relayguard_sendmail_makemap"] = str(makemap_binary())
    return found


def write_inventory(lab: LabDir, manifest: Manifest, secrets: dict[str, dict[str, str]]) -> Path:
    text = "# Written by `relayguard lab up`; credentials are in host_vars/ (0600).\n"
    text += yaml.safe_dump(inventory_document(lab, manifest), sort_keys=False)
    lab.inventory.write_text(text, encoding="utf-8")
    for host in manifest.hosts:
        secret = secrets.get(host.name)
        if secret is None or "password" not in secret:
            continue
        host_vars = {"ansible_user": secret["username"], "ansible_password": secret["password"]}
        if "smtp_password" in secret:
            host_vars["relayguard_smtp_auth_user"] = "relayuser"
            host_vars["relayguard_smtp_auth_password"] = secret["smtp_password"]
        # YAML is a superset of JSON: a JSON document is a valid host_vars file.
        write_private_json(lab.host_vars / f"{host.name}.yml", host_vars)
    return lab.inventory
