"""`relayguard lab up --json` gives each 5.5 twin an SMB endpoint; Samba's `net rpc registry`
and relayguard's SMB channel read the same IMS values from every one of them.

Brings up the lab on its fixed addresses, like the other lab tests
(tests/exchange/test_facts_lab.py): never two such runs at once.
"""

from __future__ import annotations

import subprocess

from support.realserver import require_tool

from relayguard.exchange.smb_channel import SmbChannel, SmbOptions, SmbRunner
from relayguard.exchange.transport import Secret

from .lab_fleet import running_lab

PARAMETERS = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters"
SAMBA_SMB1 = [
    "--option=client min protocol=NT1",
    "--option=client signing=disabled",
    "--option=client ipc signing=disabled",
]


def _net(address: str, port: int, credentials: str, name: str) -> list[str]:
    done = subprocess.run(
        ["net", "rpc", "registry", "getvalue", PARAMETERS, name, "-I", address, "-p", str(port),
         "-U", credentials, *SAMBA_SMB1],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout.splitlines()[1:] if done.returncode == 0 else ["absent"]


def test_every_55_twin_has_an_smb_endpoint_samba_and_relayguard_agree() -> None:
    require_tool("net")
    with running_lab("--hosts", "exchange55:4", "--first-address", "127.0.57.1") as lab:
        hosts = [h for h in lab["hosts"] if h["platform"] == "exchange55"]
        assert len(hosts) == 4
        for host in hosts:
            address, port_text = host["smb"].rsplit(":", 1)
            port = int(port_text)
            assert address == host["address"]
            options = SmbOptions(address, host["username"], Secret(host["password"]), port=port)
            channel = SmbChannel(options)
            try:
                params = SmbRunner(channel).read_config({})["Parameters"]
                assert channel.computer_name() == host["server"]
            finally:
                channel.close()
            credentials = f"{host['username']}%{host['password']}"
            flags = _net(address, port, credentials, "RelayFlags")
            expected = (
                ["absent"]
                if params["RelayFlags"] is None
                else [f"Value      = {params['RelayFlags']}"]
            )
            assert flags == expected, host["name"]
            allow = _net(address, port, credentials, "RelayAllowList")
            if params["RelayAllowList"] is None:
                assert allow == ["absent"]
            else:
                assert allow == [
                    f'Value[{i:03d}] = "{line}"' for i, line in enumerate(params["RelayAllowList"])
                ]
