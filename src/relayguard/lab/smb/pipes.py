"""What every pipe server of the 5.5 twin shares: impacket's `DCERPCServer`, except that an
opnum it does not serve answers the fault Windows gives, nca_s_op_rng_error (0x1C010002, the
DCE/RPC "operation number out of range"), so a client can fall back to an older call (Samba's
`net` tries LsarOpenPolicy3 before LsarOpenPolicy2)."""

from __future__ import annotations

import copy
import logging
import struct
import threading
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
    """impacket's server serves one pipe connection at a time and keeps serving it until the
    client closes it; SMB clients that log off without closing their pipes would block every
    later client. Here each connection has its own thread and its own RPC state (bound
    interface, call ids), sharing the handle tables of the listening server."""

    def __init__(self) -> None:
        DCERPCServer.__init__(self)
        self.daemon = True

    def run(self) -> None:
        self._sock.listen(10)
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            session = copy.copy(self)
            session._clientSock = client
            session._boundUUID = b""
            session._callid = 1
            session._max_frag = None
            threading.Thread(target=session.serve_client, daemon=True).start()

    def serve_client(self) -> None:
        try:
            while True:
                data = self.recv()
                if data is None:
                    break
                answer = self.processRequest(data)
                if answer is not None:
                    self.send(answer)
        except (OSError, ValueError, struct.error):
            pass
        finally:
            self._clientSock.close()

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
