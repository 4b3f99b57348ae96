"""Shared documentation of the WinRM connection options of relayguard's Exchange modules.

The options themselves are one argument spec (`relayguard.exchange.connection.
CONNECTION_ARGUMENT_SPEC`); this fragment documents them once for exchange_relay and
exchange_patch (`extends_documentation_fragment: relayguard_winrm`).
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  winrm_host:
    description:
      - Address or DNS name of the Exchange server's WinRM endpoint. Usually
        C({{ ansible_host }}) with the task delegated to the controller.
    type: str
    required: true
  winrm_port:
    description: WinRM port; 5986 with HTTPS, 5985 without.
    type: int
  winrm_username:
    description: Account for WinRM (a local or domain administrator of the server).
    type: str
  winrm_password:
    description: Its password. Never logged or returned.
    type: str
  winrm_auth:
    description:
      - WinRM authentication. V(basic) is refused over plain HTTP; V(certificate) and
        V(credssp) need HTTPS.
    type: str
    choices: [ntlm, kerberos, credssp, certificate, basic]
    default: ntlm
  winrm_use_https:
    description:
      - Use HTTPS (certificate validated). Plain HTTP encrypts the messages (NTLM,
        Kerberos).
    type: bool
    default: true
  winrm_ca_trust_path:
    description: CA bundle (PEM) that validates the server certificate; default the system bundle.
    type: str
  winrm_validate_certs:
    description: Validate the server certificate. Turning this off is warned about.
    type: bool
    default: true
  winrm_operation_timeout:
    description: WS-Management operation timeout of each request, in seconds.
    type: int
    default: 20
  winrm_command_timeout:
    description: Bound on waiting for one payload (an installer, a restart), in seconds.
    type: float
    default: 600
  smtp_wait:
    description:
      - After a service restart, an install or a reboot, wait until the SMTP listener at
        O(winrm_host):O(smtp_port) greets with 220 again.
    type: bool
    default: true
  smtp_port:
    description: SMTP port to wait for.
    type: int
    default: 25
  smtp_timeout:
    description: How long to wait for the SMTP greeting, in seconds.
    type: float
    default: 300
"""
