"""SOAP envelopes of the WinRM shell protocol: parse a request, build a response or a fault.

Pure functions over bytes. The names and shapes follow [MS-WSMV] (the Windows Remote Shell
messages: Create → ``x:ResourceCreated``, Command → ``rsp:CommandResponse``, Send (base64
``rsp:Stream Name="stdin"`` elements, 3.1.4.13) → ``rsp:SendResponse``, Receive →
``rsp:ReceiveResponse`` with base64 ``rsp:Stream`` elements and ``rsp:CommandState``, Signal,
Delete) and the responses pywinrm's test fixtures record from real Windows hosts.

Request XML comes from the network, so documents with a DTD are refused before parsing (no
entity expansion of any kind); the rest is plain ElementTree.
"""

from __future__ import annotations

import base64
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from relayguard.lab.wsman.faults import SCHEMA_VALIDATION, FaultSpec, WsmanFault

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"

RESOURCE_CMD_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
ACTION_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACTION_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
ACTION_COMMAND = f"{NS_SHELL}/Command"
ACTION_RECEIVE = f"{NS_SHELL}/Receive"
ACTION_SIGNAL = f"{NS_SHELL}/Signal"
ACTION_SEND = f"{NS_SHELL}/Send"
ACTION_FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
SIGNAL_TERMINATE = f"{NS_SHELL}/signal/terminate"
SIGNAL_CTRL_C = f"{NS_SHELL}/signal/ctrl_c"
STATE_RUNNING = f"{NS_SHELL}/CommandState/Running"
STATE_DONE = f"{NS_SHELL}/CommandState/Done"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

# Short names used by fault injection and logs.
ACTION_NAMES = {
    ACTION_CREATE: "Create",
    ACTION_DELETE: "Delete",
    ACTION_COMMAND: "Command",
    ACTION_RECEIVE: "Receive",
    ACTION_SIGNAL: "Signal",
    ACTION_SEND: "Send",
}

_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


@dataclass(frozen=True)
class WsmanRequest:
    """The parts of a WS-Management request the shell service looks at."""

    action: str
    resource_uri: str
    message_id: str
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    operation_timeout: float | None = None
    body: ET.Element | None = None  # first child of s:Body, if any

    @property
    def action_name(self) -> str:
        return ACTION_NAMES.get(self.action, self.action.rsplit("/", 1)[-1])


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def parse_duration(text: str) -> float | None:
    """Seconds in an xs:duration such as ``PT20S`` or ``PT60.000S``; None if not one."""
    match = _DURATION.match(text.strip())
    if not match or not any(match.groupdict().values()):
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def parse_request(data: bytes) -> WsmanRequest:
    """Parse a SOAP request; raises WsmanFault (SchemaValidationError) if it is not one."""
    if _DTD.search(data):
        raise WsmanFault(SCHEMA_VALIDATION, "Documents with a DTD are not accepted.")
    try:
        root = ET.fromstring(data)  # noqa: S314 - DTDs refused above, so no entity expansion
    except ET.ParseError:
        raise WsmanFault(SCHEMA_VALIDATION) from None
    if root.tag != _q(NS_SOAP, "Envelope"):
        raise WsmanFault(SCHEMA_VALIDATION)
    header = root.find(_q(NS_SOAP, "Header"))
    if header is None:
        raise WsmanFault(SCHEMA_VALIDATION)

    def text(namespace: str, name: str) -> str:
        node = header.find(_q(namespace, name))
        return (node.text or "").strip() if node is not None else ""

    selectors = {
        node.get("Name", ""): (node.text or "").strip()
        for node in header.iterfind(f"{_q(NS_WSMAN, 'SelectorSet')}/{_q(NS_WSMAN, 'Selector')}")
    }
    options = {
        node.get("Name", ""): (node.text or "").strip()
        for node in header.iterfind(f"{_q(NS_WSMAN, 'OptionSet')}/{_q(NS_WSMAN, 'Option')}")
    }
    body = root.find(_q(NS_SOAP, "Body"))
    first = next(iter(body), None) if body is not None else None
    action = text(NS_ADDRESSING, "Action")
    if not action:
        raise WsmanFault(SCHEMA_VALIDATION, "The request has no a:Action header.")
    return WsmanRequest(
        action=action,
        resource_uri=text(NS_WSMAN, "ResourceURI"),
        message_id=text(NS_ADDRESSING, "MessageID"),
        selectors=selectors,
        options=options,
        operation_timeout=parse_duration(text(NS_WSMAN, "OperationTimeout")),
        body=first,
    )


def shell_child_text(element: ET.Element | None, name: str) -> str | None:
    """Text of an ``rsp:<name>`` child of `element` (None when absent)."""
    if element is None:
        return None
    node = element.find(_q(NS_SHELL, name))
    return None if node is None else (node.text or "")


def is_shell_element(element: ET.Element | None, name: str) -> bool:
    return element is not None and element.tag == _q(NS_SHELL, name)


# ----------------------------------------------------------------------------- responses

_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
)


def envelope(action: str, relates_to: str, body: str) -> bytes:
    """A response envelope: addressing headers, then `body` (already-escaped XML)."""
    relates = f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>" if relates_to else ""
    header = (
        f"<s:Header><a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<a:To>{ANONYMOUS}</a:To>{relates}</s:Header>"
    )
    inner = f"<s:Body>{body}</s:Body>" if body else "<s:Body/>"
    return f'<?xml version="1.0" ?>{_ENVELOPE_OPEN}{header}{inner}</s:Envelope>'.encode()


def fault_envelope(spec: FaultSpec, relates_to: str, machine: str, detail: str) -> bytes:
    """A SOAP fault with a WSManFault detail, as Windows sends it (HTTP status 500)."""
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>{spec.code}</s:Value>"
        f"<s:Subcode><s:Value>{spec.subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(spec.reason)}</s:Text></s:Reason>'
        "<s:Detail>"
        f'<f:WSManFault xmlns:f="{NS_FAULT}" Code="{spec.wsman_code}" '
        f"Machine={quoteattr(machine)}><f:Message>{escape(detail)}</f:Message></f:WSManFault>"
        "</s:Detail></s:Fault>"
    )
    return envelope(ACTION_FAULT, relates_to, body)


def create_response(
    relates_to: str, endpoint_url: str, shell_id: str, owner: str, client_ip: str
) -> bytes:
    body = (
        "<x:ResourceCreated>"
        f"<a:Address>{escape(endpoint_url)}</a:Address>"
        "<a:ReferenceParameters>"
        f"<w:ResourceURI>{RESOURCE_CMD_SHELL}</w:ResourceURI>"
        f'<w:SelectorSet><w:Selector Name="ShellId">{escape(shell_id)}</w:Selector>'
        "</w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"
        "<rsp:Shell>"
        f"<rsp:ShellId>{escape(shell_id)}</rsp:ShellId>"
        f"<rsp:ResourceUri>{RESOURCE_CMD_SHELL}</rsp:ResourceUri>"
        f"<rsp:Owner>{escape(owner)}</rsp:Owner>"
        f"<rsp:ClientIP>{escape(client_ip)}</rsp:ClientIP>"
        "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
        "<rsp:InputStreams>stdin</rsp:InputStreams>"
        "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"
        "</rsp:Shell>"
    )
    return envelope(f"{ACTION_CREATE}Response", relates_to, body)


def command_response(relates_to: str, command_id: str) -> bytes:
    body = (
        "<rsp:CommandResponse>"
        f"<rsp:CommandId>{escape(command_id)}</rsp:CommandId>"
        "</rsp:CommandResponse>"
    )
    return envelope(f"{ACTION_COMMAND}Response", relates_to, body)


@dataclass(frozen=True)
class StreamChunk:
    """What one Receive returns: the next bytes of each stream, and the state after them."""

    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int = 0


def receive_response(relates_to: str, command_id: str, chunk: StreamChunk) -> bytes:
    cid = quoteattr(command_id)
    parts: list[str] = []
    for name, data in (("stdout", chunk.stdout), ("stderr", chunk.stderr)):
        if data:
            encoded = base64.b64encode(data).decode("ascii")
            parts.append(f'<rsp:Stream Name="{name}" CommandId={cid}>{encoded}</rsp:Stream>')
    if chunk.done:
        parts.extend(
            f'<rsp:Stream Name="{name}" CommandId={cid} End="true"></rsp:Stream>'
            for name in ("stdout", "stderr")
        )
        # A Windows exit code is a DWORD; negative codes travel as their unsigned value.
        exit_code = chunk.exit_code & 0xFFFFFFFF
        parts.append(
            f'<rsp:CommandState CommandId={cid} State="{STATE_DONE}">'
            f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState>"
        )
    else:
        parts.append(f'<rsp:CommandState CommandId={cid} State="{STATE_RUNNING}"/>')
    body = f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"
    return envelope(f"{ACTION_RECEIVE}Response", relates_to, body)


def send_response(relates_to: str) -> bytes:
    """[MS-WSMV] 3.1.4.13: the answer to a Send that was taken."""
    return envelope(f"{ACTION_SEND}Response", relates_to, "<rsp:SendResponse/>")


def signal_response(relates_to: str) -> bytes:
    return envelope(f"{ACTION_SIGNAL}Response", relates_to, "<rsp:SignalResponse/>")


def delete_response(relates_to: str) -> bytes:
    return envelope(f"{ACTION_DELETE}Response", relates_to, "")
