"""Documentation of the WinRM connection options shared by relayguard's Exchange modules.

The options are one static argument spec, plugins/module_utils/winrm_options.py
(`WINRM_CONNECTION_SPEC`, `SMTP_WAIT_SPEC`); this fragment documents them once:
`relayguard.mail.winrm` (connection and SMTP wait: exchange_relay, exchange_patch) and
`relayguard.mail.winrm.connection` (connection only: exchange_facts).
"""

from __future__ import annotations


class ModuleDocFragment:
    # Both texts are literals: ansible-test's yamllint reads them without running the code.
    # tests/exchange_remediation/test_module_docs.py compares what ansible-doc renders from
    # them with each module's argument spec.
    DOCUMENTATION = r"""
options:
  winrm_host:
    description:
      - Address or DNS name of the Exchange server's WinRM endpoint. Usually
        C({{ ansible_host }}) with the task delegated to the controller.
    type: str
    required: true
    aliases: [host]
  winrm_port:
    description:
      - WinRM port (C(ansible_port)); default 5986 with O(winrm_scheme=https), 5985 with
        O(winrm_scheme=http).
    type: int
    aliases: [port]
  winrm_scheme:
    description:
      - URI scheme of the endpoint, as C(ansible_winrm_scheme). V(http) still encrypts the
        messages with V(ntlm) and V(kerberos); V(basic) is refused over it.
    type: str
    choices: [https, http]
    default: https
  winrm_transport:
    description:
      - WinRM authentication, as C(ansible_winrm_transport). V(basic) is refused over plain
        HTTP; V(certificate) and V(credssp) need HTTPS.
    type: str
    choices: [ntlm, kerberos, credssp, certificate, basic]
    default: ntlm
    aliases: [winrm_auth, transport]
  winrm_username:
    description:
      - Account for WinRM (C(ansible_user)), a local or domain administrator of the server,
        for example C(CORP\admin) or C(admin@corp.example).
    type: str
    aliases: [username]
  winrm_password:
    description: Password of O(winrm_username) (C(ansible_password)). Never logged or returned.
    type: str
    aliases: [password]
  validate_certs:
    description:
      - Validate the server certificate (C(ansible_winrm_server_cert_validation=validate)).
        Turning this off leaves the host unauthenticated and is warned about.
    type: bool
    default: true
    aliases: [winrm_validate_certs]
  ca_path:
    description:
      - CA bundle (PEM file on the controller) the server certificate is validated against,
        as C(ansible_winrm_ca_trust_path); default the system bundle.
    type: path
    aliases: [winrm_ca_trust_path, ca_trust_path]
  winrm_connect_timeout:
    description: Seconds to wait for the TCP and TLS connection.
    type: float
    default: 10
    aliases: [connect_timeout]
  winrm_operation_timeout:
    description:
      - WS-Management OperationTimeout of each request, whole seconds
        (C(ansible_winrm_operation_timeout_sec)).
    type: int
    default: 20
    aliases: [operation_timeout]
  winrm_read_timeout:
    description:
      - HTTP read timeout of each request, whole seconds, above O(winrm_operation_timeout)
        (C(ansible_winrm_read_timeout_sec)); default O(winrm_operation_timeout) + 10.
    type: int
  winrm_command_timeout:
    description: Bound on waiting for one payload (a read, an installer, a restart), in seconds.
    type: float
    default: 600
    aliases: [command_timeout]
  channel:
    description:
      - How to manage the host. V(winrm) runs the PowerShell payloads over WinRM (Exchange
        2013 and later). V(smb) manages an Exchange 5.5 host on Windows NT 4.0 or 2000, which
        have no WinRM, over SMB1 with NTLM - the remote registry (MS-RRP), the service control
        manager (MS-SCMR) and the C$ / ADMIN$ shares - as O(winrm_username) with
        O(winrm_password) on O(smb_port); the same rules, facts, backups and rollback.
      - V(via-management-host) runs the payloads over WinRM on a Windows management host
        (O(management_host), Windows PowerShell 3.0 or later) that reaches the Exchange 5.5
        host O(winrm_host) with the remote registry, remote service control and UNC paths,
        connecting as O(winrm_username) with O(winrm_password) when they are given (else as
        the management host's own session, which needs CredSSP or Kerberos delegation); the
        same rules, facts, backups and rollback. O(winrm_scheme), O(winrm_transport),
        O(ca_path) and the timeouts apply to the management host.
    type: str
    choices: [winrm, smb, via-management-host]
    default: winrm
  smb_port:
    description: SMB port of the host when O(channel=smb).
    type: int
    default: 445
  management_host:
    description:
      - Address or DNS name of the Windows management host when
        O(channel=via-management-host).
    type: str
  management_port:
    description:
      - WinRM port of the management host; default 5986 with O(winrm_scheme=https), 5985
        with O(winrm_scheme=http).
    type: int
  management_username:
    description: The management host's WinRM account when O(channel=via-management-host).
    type: str
  management_password:
    description: The password of O(management_username); never logged.
    type: str
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

    CONNECTION = r"""
options:
  winrm_host:
    description:
      - Address or DNS name of the Exchange server's WinRM endpoint. Usually
        C({{ ansible_host }}) with the task delegated to the controller.
    type: str
    required: true
    aliases: [host]
  winrm_port:
    description:
      - WinRM port (C(ansible_port)); default 5986 with O(winrm_scheme=https), 5985 with
        O(winrm_scheme=http).
    type: int
    aliases: [port]
  winrm_scheme:
    description:
      - URI scheme of the endpoint, as C(ansible_winrm_scheme). V(http) still encrypts the
        messages with V(ntlm) and V(kerberos); V(basic) is refused over it.
    type: str
    choices: [https, http]
    default: https
  winrm_transport:
    description:
      - WinRM authentication, as C(ansible_winrm_transport). V(basic) is refused over plain
        HTTP; V(certificate) and V(credssp) need HTTPS.
    type: str
    choices: [ntlm, kerberos, credssp, certificate, basic]
    default: ntlm
    aliases: [winrm_auth, transport]
  winrm_username:
    description:
      - Account for WinRM (C(ansible_user)), a local or domain administrator of the server,
        for example C(CORP\admin) or C(admin@corp.example).
    type: str
    aliases: [username]
  winrm_password:
    description: Password of O(winrm_username) (C(ansible_password)). Never logged or returned.
    type: str
    aliases: [password]
  validate_certs:
    description:
      - Validate the server certificate (C(ansible_winrm_server_cert_validation=validate)).
        Turning this off leaves the host unauthenticated and is warned about.
    type: bool
    default: true
    aliases: [winrm_validate_certs]
  ca_path:
    description:
      - CA bundle (PEM file on the controller) the server certificate is validated against,
        as C(ansible_winrm_ca_trust_path); default the system bundle.
    type: path
    aliases: [winrm_ca_trust_path, ca_trust_path]
  winrm_connect_timeout:
    description: Seconds to wait for the TCP and TLS connection.
    type: float
    default: 10
    aliases: [connect_timeout]
  winrm_operation_timeout:
    description:
      - WS-Management OperationTimeout of each request, whole seconds
        (C(ansible_winrm_operation_timeout_sec)).
    type: int
    default: 20
    aliases: [operation_timeout]
  winrm_read_timeout:
    description:
      - HTTP read timeout of each request, whole seconds, above O(winrm_operation_timeout)
        (C(ansible_winrm_read_timeout_sec)); default O(winrm_operation_timeout) + 10.
    type: int
  winrm_command_timeout:
    description: Bound on waiting for one payload (a read, an installer, a restart), in seconds.
    type: float
    default: 600
    aliases: [command_timeout]
  channel:
    description:
      - How to manage the host. V(winrm) runs the PowerShell payloads over WinRM (Exchange
        2013 and later). V(smb) manages an Exchange 5.5 host on Windows NT 4.0 or 2000, which
        have no WinRM, over SMB1 with NTLM - the remote registry (MS-RRP), the service control
        manager (MS-SCMR) and the C$ / ADMIN$ shares - as O(winrm_username) with
        O(winrm_password) on O(smb_port); the same rules, facts, backups and rollback.
      - V(via-management-host) runs the payloads over WinRM on a Windows management host
        (O(management_host), Windows PowerShell 3.0 or later) that reaches the Exchange 5.5
        host O(winrm_host) with the remote registry, remote service control and UNC paths,
        connecting as O(winrm_username) with O(winrm_password) when they are given (else as
        the management host's own session, which needs CredSSP or Kerberos delegation); the
        same rules, facts, backups and rollback. O(winrm_scheme), O(winrm_transport),
        O(ca_path) and the timeouts apply to the management host.
    type: str
    choices: [winrm, smb, via-management-host]
    default: winrm
  smb_port:
    description: SMB port of the host when O(channel=smb).
    type: int
    default: 445
  management_host:
    description:
      - Address or DNS name of the Windows management host when
        O(channel=via-management-host).
    type: str
  management_port:
    description:
      - WinRM port of the management host; default 5986 with O(winrm_scheme=https), 5985
        with O(winrm_scheme=http).
    type: int
  management_username:
    description: The management host's WinRM account when O(channel=via-management-host).
    type: str
  management_password:
    description: The password of O(management_username); never logged.
    type: str
"""
