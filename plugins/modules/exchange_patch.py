#!/usr/bin/python
"""Ansible module exchange_patch: bring an Exchange server to a required fix level (thin layer).

Arguments here; validation, the decision, upload, install and verification live in
relayguard.exchange.patch. Runs on the controller and reaches the server over WinRM.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: exchange_patch
short_description: Install an Exchange fix (5.5 IMS hotfix or 2013+ security update) if needed
version_added: "0.1.0"
description:
  - Runs on the controller (delegate the task to C(localhost)) and talks to one Exchange
    server over WinRM.
  - Reads the fix level from the file version of the binary the fix replaces - C(msexcimc.exe)
    on Exchange 5.5 (the MS99-027 encapsulated-address relay is fixed from 5.5.2650.1, KB
    Q237927), C(ExSetup.exe) on 2013 and later (as HealthChecker reads it). Does nothing when
    it already meets O(minimum_version).
  - Refuses, before installing anything, a package whose SHA-256 is not O(sha256) (checked on
    the controller before upload and again on the host) and a package that does not target
    the server (O(target_version) of another product, or of another CU on 2013 and later);
    the installer's own "does not apply" (msiexec 1642) is reported the same way.
  - Exchange 5.5 - stops MSExchangeIMC, runs the hotfix with its quiet switches, starts the
    service, checks the file version. 2013 and later - an C(.msp) through
    C(msiexec /update <package> /qn /norestart) from the elevated WinRM session (a
    non-elevated install breaks the server, KB5011363), an C(.exe) with its quiet switches;
    then the file version of ExSetup.exe and RV(reboot_required) when the installer says so
    (exit 3010 or a pending reboot).
  - Every option is validated before any WinRM call.
extends_documentation_fragment:
  - relayguard.mail.winrm
  - ansible.builtin.action_common_attributes
author:
  - relayguard developers (@relayguard)
requirements:
  - The relayguard package and pywinrm on the controller.
attributes:
  check_mode:
    support: full
    details: Reads the installed level and checks the package's hash; installs nothing.
  diff_mode:
    support: full
    details: The binary's version before and after.
  platform:
    support: full
    platforms: windows
    details: Runs on the controller and reaches the Exchange server over WinRM.
options:
  package_path:
    description:
      - The package on the server (C(C:\...)) or on a share (C(\\server\share\...)),
        ending in C(.msp) or C(.exe). Exactly one of O(package_path) and O(package_src).
    type: str
  package_src:
    description:
      - The package on the controller; it is uploaded to O(remote_temp_dir), installed
        and removed. Over WinRM it goes in bulk on one command's standard input (WS-Man
        Send, within the host's MaxEnvelopeSizekb) and the host checks its length and
        SHA-256; over SMB (O(channel=smb)) in chunks.
    type: str
  sha256:
    description: Expected SHA-256 of the package (64 hexadecimal digits).
    type: str
    required: true
  target_version:
    description: The file version the package gives the binary (e.g. V(5.5.2650.1)).
    type: str
    required: true
  minimum_version:
    description: The fix level required; default O(target_version).
    type: str
  installer_arguments:
    description:
      - Quiet switches for an C(.exe) package. Default V(-q -z) for a 5.5 hotfix and
        V(/passive /norestart) for an Exchange security update (unverified for the 1999
        hotfix packages - check the package's own documentation).
    type: list
    elements: str
  reboot:
    description: Restart the server when the installer asks for it, and wait for SMTP. A rerun
      also restarts a server that already has the package but still has its reboot pending
      (a reboot that failed in an earlier run).
    type: bool
    default: false
  remote_temp_dir:
    description: Directory on the server for an uploaded package.
    type: str
    default: C:\Windows\Temp
seealso:
  - name: MS99-027 / KB Q237927
    description: The Exchange 5.5 IMS encapsulated-address relay fix.
    link: https://learn.microsoft.com/security-updates/securitybulletins/1999/ms99-027
"""

EXAMPLES = r"""
- name: Exchange 5.5 IMS hotfix (MS99-027) uploaded from the controller
  relayguard.mail.exchange_patch:
    winrm_host: "{{ ansible_host }}"
    winrm_username: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    package_src: files/IMS-Q237927-SP2-x86.exe
    sha256: BDB5189A699742620ED7D21ACC70B6545B80820DF790DB2DCA1E87EEDDC06702
    target_version: 5.5.2650.1
  delegate_to: localhost

- name: Exchange 2019 security update already staged on the server; reboot if asked
  relayguard.mail.exchange_patch:
    winrm_host: "{{ ansible_host }}"
    winrm_username: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    package_path: C:\Patches\Exchange2019-CU14-SU.msp
    sha256: F3BF96D45099519109979D90B9D50BE0D42819EA83A5BA4FFF1917235816237B
    target_version: 15.2.1544.14
    reboot: true
  delegate_to: localhost
"""

RETURN = r"""
platform:
  description: V(exchange55) or V(modern).
  returned: success
  type: str
binary:
  description: The file the fix level is read from.
  returned: success
  type: str
  sample: msexcimc.exe
reason:
  description: Why the package was or was not needed.
  returned: success
  type: str
version_before:
  description: The binary's version before.
  returned: success
  type: str
  sample: 5.5.2448.0
version_after:
  description: Its version after (the same when nothing was installed); on a failure, the
    version read after the attempt when it could be read (else null).
  returned: always
  type: str
  sample: 5.5.2650.1
exit_code:
  description: The installer's exit code (0, or 3010 reboot required); null when not run.
  returned: success
  type: int
reboot_required:
  description: Whether the server needs a restart to finish the update.
  returned: success
  type: bool
rebooted:
  description: Whether the module restarted the server (O(reboot)).
  returned: success
  type: bool
package_path:
  description: The package's path on the server as installed (null when nothing ran).
  returned: success
  type: str
messages:
  description: Notes about the run.
  returned: success
  type: list
  elements: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.relayguard.mail.plugins.module_utils.exchange_options import (
    PATCH_OPTIONS_SPEC,
)
from ansible_collections.relayguard.mail.plugins.module_utils.winrm_options import (
    SMTP_WAIT_SPEC,
    WINRM_CONNECTION_SPEC,
)

try:
    from relayguard.exchange.patch_task import run_patch_task
    from relayguard.exchange.relay_task import TaskFailure

    IMPORT_ERROR = None
except ImportError:  # reported by main() once the module can fail properly
    IMPORT_ERROR = traceback.format_exc()

RELAYGUARD = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(PATCH_OPTIONS_SPEC, **WINRM_CONNECTION_SPEC, **SMTP_WAIT_SPEC),
        mutually_exclusive=[("package_path", "package_src")],
        required_one_of=[("package_path", "package_src")],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(RELAYGUARD), exception=IMPORT_ERROR)
    try:
        result = run_patch_task(module.params, check_mode=module.check_mode)
    except TaskFailure as exc:
        module.fail_json(msg=str(exc), **exc.details)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
