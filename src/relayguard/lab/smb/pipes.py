"""What every pipe server of the 5.5 twin shares: impacket's `DCERPCServer`, except that an
opnum it does not serve answers the fault Windows gives, nca_s_op_rng_error (0x1C010002, the
DCE/RPC "operation number out of range"), so a client can fall back to an older call (Samba's
`net` tries LsarOpenPolicy3 before LsarOpenPolicy2)."""

from __future__ import annotations

import logging
import struct
from typing import Any

from impacket.dcerpc.v5.rpcrt import (
    MSRPC_FAULT,
    MSRPC_REQUEST,
    DCERPCServer,
    MSRPCHeader,
    MSRPCRequestHeader,
    MSRPCRespHeader,
)

NCA_S_OP_RNG_ERROR = 0x1C010002
log = logging.getLogger("relayguard.lab.smb")


class PipeServer(DCERPCServer):  # type: ignore[misc]
    def __init__(self) -> None:
        DCERPCServer.__init__(self)
        self.daemon = True

    def processRequest(self, data: bytes) -> Any:
        packet = MSRPCHeader(data)
        if packet["type"] == MSRPC_REQUEST:
            request = MSRPCRequestHeader(data)
            served = self._listenUUIDS.get(self._boundUUID)
            if served is not None and request["op_num"] not in served["CallBacks"]:
                log.warning("opnum %d not served", request["op_num"])
                response = MSRPCRespHeader(data)
                response["type"] = MSRPC_FAULT
                response["pduData"] = struct.pack("<LL", NCA_S_OP_RNG_ERROR, 0)  # status, reserved
                response["frag_len"] = len(response)
                return response
        try:
            return DCERPCServer.processRequest(self, data)
        except Exception:
            log.exception("pipe request failed")  # impacket's loop would drop it silently
            raise
