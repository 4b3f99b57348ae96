"""CLIXML of an Exchange 2013+ server as facts: an admin's capture, and every live read.

An admin runs the read-only collector (`collector/Export-RelayguardCapture.ps1`, printed by
`relayguard facts --collector`) in the Exchange Management Shell; it writes one Export-Clixml
file per cmdlet. `load_capture` reads such a directory (I/O; CLIXML deserialised by psrpcore,
PowerShell's own serialisation: docs/sources.md#ms-psrp-clixml); `documents_from_capture` turns
the objects into the documents the live read payloads print (docs/payloads.md), pure, so the
same `facts_from_documents` and the same rule table judge a capture and a live server. A file
that is missing makes its facts unknown (said in the notes), never a crash.

HealthChecker's capture names (`GetReceiveConnector.xml`, ...) are read too
(docs/sources.md#healthchecker-captures).

The live `modern.read_config` payload prints the same objects as CLIXML (one PSSerializer
document per object, docs/payloads.md); `read_output` turns them into the same document through
`config_from_objects`, so a live server, a capture and the lab's twin are read by one parser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

from psrpcore.types import PSCryptoProvider, PSSecureString, deserialize_clixml

COLLECTOR = Path(__file__).parent / "collector" / "Export-RelayguardCapture.ps1"
ANONYMOUS = "NT AUTHORITY\\ANONYMOUS LOGON"
MAX_FILE_BYTES = 64 * 1024 * 1024

# What the collector writes, and the names HealthChecker's own captures use.
CAPTURE_FILES: Mapping[str, tuple[str, ...]] = {
    "ExSetup": ("ExSetup.xml",),
    "ExchangeServer": ("ExchangeServer.xml", "GetExchangeServer.xml"),
    "ReceiveConnector": ("ReceiveConnector.xml", "GetReceiveConnector.xml"),
    "AcceptedDomain": ("AcceptedDomain.xml", "GetAcceptedDomain.xml"),
    "ADPermission": ("ADPermission.xml", "GetADPermission.xml"),
    "TransportAgent": ("TransportAgent.xml", "GetTransportAgent.xml"),
    "RecipientFilterConfig": ("RecipientFilterConfig.xml", "GetRecipientFilterConfig.xml"),
}
_VERSION = re.compile(r"Version (\d+)\.(\d+) \(Build (\d+)\.(\d+)\)")


class CaptureError(ValueError):
    """A capture directory or file that cannot be read; the message names it."""


class _NoSecrets(PSCryptoProvider):
    """Export-Clixml protects a SecureString with the user's DPAPI key: a capture has none
    relayguard needs, so one is an error rather than a secret to decrypt."""

    def decrypt(self, value: str) -> str:
        raise CaptureError("a SecureString in the capture: relayguard reads none")

    def encrypt(self, value: str) -> str:
        raise CaptureError("relayguard writes no SecureString")


@dataclass(frozen=True)
class Capture:
    """The deserialised objects of each capture file found (kind -> objects)."""

    directory: str
    objects: Mapping[str, Sequence[Any]]


# --- I/O ---------------------------------------------------------------------------------------


def _decode(raw: bytes, name: str) -> str:
    """Export-Clixml writes UTF-16 LE with a BOM by default (Windows PowerShell), UTF-8 with
    `-Encoding UTF8`: decode by the byte-order mark."""
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return raw.decode("utf-16")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaptureError(f"{name}: not UTF-8 or UTF-16 text ({exc.reason})") from None


def objects_from_text(text: str, name: str) -> list[Any]:
    """The objects of one CLIXML document (an Export-Clixml file, or one object a live read
    serialised with PSSerializer); CaptureError naming `name` when it is not one."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise CaptureError(f"{name}: a DTD or entity declaration; CLIXML has none")
    if not text.lstrip().startswith(("<Objs", "#< CLIXML")):
        raise CaptureError(f"{name}: not an Export-Clixml file (no <Objs> root)")
    try:
        objects = list(deserialize_clixml(text, _NoSecrets()))
    except CaptureError as exc:
        raise CaptureError(f"{name}: {exc}") from None
    except (ParseError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CaptureError(f"{name}: malformed CLIXML ({exc})") from None
    if any(isinstance(obj, PSSecureString) for obj in objects):
        raise CaptureError(f"{name}: a SecureString where objects belong; relayguard reads none")
    return objects


def _read_objects(path: Path) -> list[Any]:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CaptureError(f"{path.name}: {size} bytes, more than {MAX_FILE_BYTES}")
    return objects_from_text(_decode(path.read_bytes(), path.name), path.name)


def load_capture(directory: str | Path) -> Capture:
    """Read every known capture file of a directory; raise CaptureError naming the problem."""
    root = Path(directory)
    if not root.is_dir():
        raise CaptureError(f"{str(directory)[:200]!r}: not a directory")
    objects: dict[str, list[Any]] = {}
    for kind, names in CAPTURE_FILES.items():
        found = next((root / n for n in names if (root / n).is_file()), None)
        if found is not None:
            objects[kind] = _read_objects(found)
    if not objects:
        expected = ", ".join(names[0] for names in CAPTURE_FILES.values())
        raise CaptureError(f"{str(directory)[:200]!r}: no capture file ({expected})")
    return Capture(str(root), objects)


# --- objects to documents (pure) ---------------------------------------------------------------


def _prop(obj: Any, name: str) -> Any:
    """A property of a deserialised object, None when it has none."""
    try:
        return obj[name]
    except (KeyError, AttributeError, TypeError):
        return None


def _text(value: Any) -> str | None:
    """What the live payloads print: the value's ToString() (enums: their names)."""
    return None if value is None else str(value)


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        return [str(value)]
    return [str(v) for v in value]


def _int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None  # e.g. "Unlimited"


def _connector(obj: Any) -> dict[str, Any]:
    return {
        "Identity": _text(_prop(obj, "Identity")) or str(obj),
        "Name": _text(_prop(obj, "Name")) or "",
        "Server": _text(_prop(obj, "Server")),
        "Bindings": _texts(_prop(obj, "Bindings")),
        "RemoteIPRanges": _texts(_prop(obj, "RemoteIPRanges")),
        "PermissionGroups": _text(_prop(obj, "PermissionGroups")),
        "AuthMechanism": _text(_prop(obj, "AuthMechanism")),
        "TransportRole": _text(_prop(obj, "TransportRole")),
        "Enabled": _prop(obj, "Enabled") is True,
        "Fqdn": _text(_prop(obj, "Fqdn")),
        "TarpitInterval": _text(_prop(obj, "TarpitInterval")),
        "MaxRecipientsPerMessage": _int(_prop(obj, "MaxRecipientsPerMessage")),
    }


def _connector_keys(objs: Sequence[Any]) -> dict[str, str]:
    """A connector's identity by every name an ACE may carry for it (identity, DN)."""
    keys: dict[str, str] = {}
    for obj in objs:
        identity = _text(_prop(obj, "Identity")) or str(obj)
        keys[identity.lower()] = identity
        dn = _text(_prop(obj, "DistinguishedName"))
        if dn:
            keys[dn.lower()] = identity
    return keys


def _permissions(objs: Sequence[Any], connectors: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ANONYMOUS LOGON entries, one per extended right, as `modern.read_config` lists them."""
    out: list[dict[str, Any]] = []
    for ace in objs:
        user = _text(_prop(ace, "User")) or ""
        if user.strip().lower() != ANONYMOUS.lower():
            continue
        raw = _prop(ace, "Identity")
        names: list[str] = [_text(raw) or "", _text(_prop(raw, "DistinguishedName")) or ""]
        identity = next((connectors[n.lower()] for n in names if n.lower() in connectors), names[0])
        rights: list[list[str]] = [[r] for r in _texts(_prop(ace, "ExtendedRights"))] or [[]]
        for right in rights:
            out.append(
                {
                    "Identity": identity,
                    "User": user,
                    "ExtendedRights": right,
                    "AccessRights": _texts(_prop(ace, "AccessRights")),
                    "Deny": _prop(ace, "Deny") is True,
                    "IsInherited": _prop(ace, "IsInherited") is True,
                }
            )
    return out


def _exsetup(objs: Sequence[Any]) -> dict[str, Any] | None:
    if not objs:
        return None
    info = objs[0]
    return {
        "Path": _text(_prop(info, "FileName")) or "ExSetup.exe",
        "FileVersion": _text(_prop(info, "FileVersion")),
        **{
            part: _int(_prop(info, part))
            for part in ("FileMajorPart", "FileMinorPart", "FileBuildPart", "FilePrivatePart")
        },
    }


def _setup_key(server: Any) -> dict[str, Any]:
    """The CU build from AdminDisplayVersion ("Version 15.2 (Build 986.5)"), in the v15 Setup
    key's shape: the fallback when ExSetup.xml is missing (it does not move with SUs)."""
    match = _VERSION.search(_text(_prop(server, "AdminDisplayVersion")) or "")
    if match is None:
        return {}
    keys = ("MsiProductMajor", "MsiProductMinor", "MsiBuildMajor", "MsiBuildMinor")
    return dict(zip(keys, (int(g) for g in match.groups()), strict=True))


def _agent(obj: Any) -> dict[str, Any]:
    return {
        "Identity": _text(_prop(obj, "Identity")) or str(obj),
        "Enabled": _prop(obj, "Enabled") is True,
    }


def _frontend_transport(connectors: Sequence[Any]) -> bool | None:
    """Whether the Front End Transport service exists: setup creates FrontendTransport
    connectors wherever it is installed (docs/sources.md#learn-receive-connectors)."""
    if not connectors:
        return None
    return any(_text(_prop(c, "TransportRole")) == "FrontendTransport" for c in connectors)


def _domains(objs: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "Name": _text(_prop(d, "Name")) or str(d),
            "DomainName": _text(_prop(d, "DomainName")) or "",
            "DomainType": _text(_prop(d, "DomainType")) or "",
            "Default": _prop(d, "Default") is True,
        }
        for d in objs
    ]


def _filter_config(objs: Sequence[Any] | None) -> dict[str, Any] | None:
    if not objs:
        return None
    return {
        "Enabled": _prop(objs[0], "Enabled") is True,
        "RecipientValidationEnabled": _prop(objs[0], "RecipientValidationEnabled") is True,
    }


def config_from_objects(
    objects: Mapping[str, Sequence[Any]], server: str, frontend: bool | None
) -> dict[str, Any]:
    """The `modern.read_config` document (docs/payloads.md) of each cmdlet's objects, by the
    capture file's kind; a kind that is missing makes its facts unknown (None)."""
    host = next(iter(objects.get("ExchangeServer", ())), None)
    connectors = list(objects.get("ReceiveConnector", ()))
    agents = objects.get("TransportAgent")
    return {
        "ServerRole": None if host is None else _text(_prop(host, "ServerRole")),
        "Server": server,
        "FrontendTransport": frontend,
        "ReceiveConnectors": None
        if "ReceiveConnector" not in objects
        else [_connector(c) for c in connectors],
        "AnonymousPermissions": None
        if "ADPermission" not in objects
        else _permissions(objects["ADPermission"], _connector_keys(connectors)),
        "AcceptedDomains": None
        if "AcceptedDomain" not in objects
        else _domains(objects["AcceptedDomain"]),
        "RecipientFilterConfig": _filter_config(objects.get("RecipientFilterConfig")),
        "TransportAgents": None if agents is None else [_agent(a) for a in agents],
    }


LIVE_KINDS = (
    "ExchangeServer",
    "ReceiveConnector",
    "AcceptedDomain",
    "ADPermission",
    "TransportAgent",
    "RecipientFilterConfig",
)


def config_from_live(document: Mapping[str, Any]) -> dict[str, Any]:
    """The `modern.read_config` document of a live read: its `Clixml` sections (one CLIXML
    document per object, null where the cmdlet failed) deserialised and read as a capture's
    files are, so a live server, an admin's capture and the twin share one parser."""
    sections = document.get("Clixml")
    if not isinstance(sections, Mapping):
        raise CaptureError("modern.read_config: no Clixml sections in the output")
    objects: dict[str, list[Any]] = {}
    for kind in LIVE_KINDS:
        texts = sections.get(kind)
        if texts is None:
            continue  # the cmdlet failed on this server: unknown
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise CaptureError(f"modern.read_config: {kind} is not a list of CLIXML documents")
        objects[kind] = [o for t in texts for o in objects_from_text(t, f"{kind} (live read)")]
    frontend = document.get("FrontendTransport")
    config = config_from_objects(
        objects,
        str(document.get("Server") or ""),
        frontend if isinstance(frontend, bool) else None,
    )
    return {"ExchangeShell": document.get("ExchangeShell"), **config}


def read_output(op: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """A read payload's output as the document the rules read: `modern.read_config` prints
    CLIXML sections (converted here), every other op its document as it is."""
    if op == "modern.read_config":
        return config_from_live(document)
    return dict(document)


def documents_from_capture(capture: Capture) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The `exchange.detect` and `modern.read_config` documents of a capture, and notes on
    what it lacks."""
    objects = capture.objects
    notes = [
        f"{names[0]} is not in the capture: its facts are unknown"
        for kind, names in CAPTURE_FILES.items()
        if kind not in objects
    ]
    server = next(iter(objects.get("ExchangeServer", ())), None)
    connectors = list(objects.get("ReceiveConnector", ()))
    name = _text(_prop(server, "Name")) or next(
        (str(_prop(c, "Server")) for c in connectors if _prop(c, "Server")), "unknown"
    )
    detect: dict[str, Any] = {
        "ComputerName": name,
        "Exchange55": None,
        "Exchange15": {
            "SetupKey": {} if server is None else _setup_key(server),
            "ExSetup": _exsetup(objects.get("ExSetup", ())),
            "InstalledUpdates": [],
            "TransportService": None,
        },
        "RebootPending": False,
    }
    config = {
        "ExchangeShell": "Capture",
        **config_from_objects(objects, name, _frontend_transport(connectors)),
    }
    return detect, config, notes
