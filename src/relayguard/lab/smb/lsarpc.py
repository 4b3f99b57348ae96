"""The `\\PIPE\\lsarpc` server of the 5.5 twin: just enough of MS-LSAD for a client to learn
the host's account domain (Samba's `net rpc` asks for it before any other pipe).

Opnums served: LsarClose 0, LsarOpenPolicy 6, LsarQueryInformationPolicy 7, LsarOpenPolicy2 44,
LsarQueryInformationPolicy2 46; information classes 3 (primary domain) and 5 (account
domain). The SID is a fixed lab value (S-1-5-21-…), the domain the twin's NetBIOS name.
"""

from __future__ import annotations

import os
from typing import Any

from impacket.dcerpc.v5 import lsad
from impacket.dcerpc.v5.dtypes import NULL

from relayguard.lab.smb.pipes import PipeServer

LSA_UUID = ("12345778-1234-ABCD-EF00-0123456789AB", "0.0")
LAB_DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
STATUS_INVALID_PARAMETER = 0xC000000D


class LsarpcServer(PipeServer):
    def __init__(self, computer_name: str) -> None:
        PipeServer.__init__(self)
        self.computer_name = computer_name.upper()
        self.addCallbacks(
            LSA_UUID,
            "\\PIPE\\lsarpc",
            {
                0: self.close,
                6: self.open_policy,
                7: self.query_info,
                44: self.open_policy2,
                46: self.query_info2,
            },
        )

    # The requests are not parsed: nothing in them changes the answer, and LsarOpenPolicy's
    # SystemName is a pointer to one wide character (MS-LSAD 3.1.4.4.1), not a string as
    # impacket declares it.
    def open_policy(self, data: bytes) -> Any:
        return self._open(lsad.LsarOpenPolicyResponse())

    def open_policy2(self, data: bytes) -> Any:
        return self._open(lsad.LsarOpenPolicy2Response())

    def _open(self, answer: Any) -> Any:
        handle = lsad.LSAPR_HANDLE()
        handle["Data"] = os.urandom(20)
        answer["PolicyHandle"] = handle
        answer["ErrorCode"] = 0
        return answer

    def close(self, data: bytes) -> Any:
        lsad.LsarClose(data)
        answer = lsad.LsarCloseResponse()
        closed = lsad.LSAPR_HANDLE()
        closed["Data"] = b"\0" * 20
        answer["ObjectHandle"] = closed
        answer["ErrorCode"] = 0
        return answer

    def _fill(self, answer: Any, level: int) -> Any:
        if level not in (3, 5):
            answer["PolicyInformation"] = NULL
            answer["ErrorCode"] = STATUS_INVALID_PARAMETER
            return answer
        info = answer["PolicyInformation"]
        info["tag"] = level
        field = "PolicyPrimaryDomainInfo" if level == 3 else "PolicyAccountDomainInfo"
        name_field = "Name" if level == 3 else "DomainName"
        sid_field = "Sid" if level == 3 else "DomainSid"
        info[field][name_field] = self.computer_name
        info[field][sid_field].fromCanonical(LAB_DOMAIN_SID)
        answer["ErrorCode"] = 0
        return answer

    def query_info(self, data: bytes) -> Any:
        request = lsad.LsarQueryInformationPolicy(data)
        return self._fill(lsad.LsarQueryInformationPolicyResponse(), request["InformationClass"])

    def query_info2(self, data: bytes) -> Any:
        request = lsad.LsarQueryInformationPolicy2(data)
        return self._fill(lsad.LsarQueryInformationPolicy2Response(), request["InformationClass"])
