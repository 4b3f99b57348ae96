"""A minimal PE image carrying only a version resource, for the twin's msexcimc.exe.

The twin's file share serves a file whose VS_FIXEDFILEINFO holds the state's ImcFileVersion,
so a reader parses a real PE version resource (docs/sources.md#pe-version-resource) instead
of a lab shortcut. The image has one section (.rsrc) and no code: it is never executed.
"""

from __future__ import annotations

import struct

FILE_ALIGN = 0x200
SECTION_ALIGN = 0x1000
RSRC_RVA = 0x1000
RT_VERSION = 16
VS_FFI_SIGNATURE = 0xFEEF04BD


def _pad(data: bytes, align: int) -> bytes:
    return data + b"\0" * (-len(data) % align)


def _utf16z(text: str) -> bytes:
    return (text + "\0").encode("utf-16le")


def _block(key: str, value: bytes, children: bytes, *, text: bool) -> bytes:
    """One VS_VERSIONINFO-style node: wLength, wValueLength, wType, szKey, Value, Children."""
    head = _pad(struct.pack("<HHH", 0, 0, 0) + _utf16z(key), 4)
    body = _pad(value, 4) if value else b""
    value_length = len(value) // 2 if text else len(value)
    length = len(head) + len(body) + len(children)
    head = struct.pack("<HHH", length, value_length, 1 if text else 0) + head[6:]
    return _pad(head + body + children, 4)


def version_info(version: str, file_name: str) -> bytes:
    """VS_VERSIONINFO for `version` ("5.5.2650.21"): the fixed part and a StringFileInfo."""
    parts = [int(p) for p in version.split(".")]
    parts += [0] * (4 - len(parts))
    ms = parts[0] << 16 | parts[1]
    ls = parts[2] << 16 | parts[3]
    fixed = struct.pack(
        "<13I", VS_FFI_SIGNATURE, 0x10000, ms, ls, ms, ls, 0x3F, 0, 0x40004, 1, 0, 0, 0
    )
    strings = b"".join(
        _block(key, _utf16z(value), b"", text=True)
        for key, value in (
            ("CompanyName", "Microsoft Corporation"),
            ("FileDescription", "Microsoft Exchange Internet Mail Service"),
            ("FileVersion", version),
            ("OriginalFilename", file_name),
        )
    )
    table = _block("040904B0", b"", strings, text=True)
    string_info = _block("StringFileInfo", b"", table, text=True)
    translation = _block("Translation", struct.pack("<HH", 0x0409, 0x04B0), b"", text=False)
    var_info = _block("VarFileInfo", b"", translation, text=True)
    return _block("VS_VERSION_INFO", fixed, string_info + var_info, text=False)


def _resource_section(info: bytes) -> bytes:
    """Three directory levels (type RT_VERSION, name 1, language 0x409) and one data entry."""

    def directory(entry_id: int, offset: int, *, leaf: bool) -> bytes:
        target = offset if leaf else offset | 0x80000000
        return struct.pack("<IIHHHH", 0, 0, 0, 0, 0, 1) + struct.pack("<II", entry_id, target)

    level1 = directory(RT_VERSION, 0x18, leaf=False)
    level2 = directory(1, 0x30, leaf=False)
    level3 = directory(0x0409, 0x48, leaf=True)
    data_offset = 0x58
    entry = struct.pack("<IIII", RSRC_RVA + data_offset, len(info), 0, 0)
    return level1 + level2 + level3 + entry + info


def make_pe(version: str, file_name: str = "msexcimc.exe") -> bytes:
    """A PE32 image whose only content is a version resource saying `version`."""
    rsrc = _resource_section(version_info(version, file_name))
    raw_size = len(_pad(rsrc, FILE_ALIGN))
    virtual_size = len(rsrc)
    image_size = RSRC_RVA + len(_pad(rsrc, SECTION_ALIGN))
    dos = b"MZ" + b"\0" * 58 + struct.pack("<I", 0x40)
    coff = struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x0102)
    directories = [(0, 0)] * 16
    directories[2] = (RSRC_RVA, virtual_size)  # IMAGE_DIRECTORY_ENTRY_RESOURCE
    optional = struct.pack(
        "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
        0x10B, 6, 0, 0, raw_size, 0, 0, 0, RSRC_RVA, 0x400000, SECTION_ALIGN, FILE_ALIGN,
        4, 0, 5, 5, 4, 0, 0, image_size, FILE_ALIGN, 0, 2, 0,
        0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    )  # fmt: skip
    optional += b"".join(struct.pack("<II", rva, size) for rva, size in directories)
    section = struct.pack(
        "<8sIIIIIIHHI", b".rsrc", virtual_size, RSRC_RVA, raw_size, FILE_ALIGN, 0, 0, 0, 0,
        0x40000040,
    )  # fmt: skip
    headers = _pad(dos + b"PE\0\0" + coff + optional + section, FILE_ALIGN)
    return headers + _pad(rsrc, FILE_ALIGN)
