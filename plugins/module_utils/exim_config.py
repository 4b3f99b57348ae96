"""Exim relay closure, configuration text (pure): read and write the relay lists and the RCPT
ACL of a plain exim.conf and of Debian's update-exim4.conf.conf.

Exim lists are colon-separated; an IPv6 address needs its colons doubled, or the list a
leading ``<;`` that makes ``;`` the separator (Exim specification, chapter 10 "Domain, host,
address, and local part lists", docs/sources.md#exim-lists). Debian's update-exim4.conf.conf
keeps ``dc_relay_nets``, ``dc_relay_domains``, ``dc_other_hostnames`` and
``dc_local_interfaces`` as semicolon-separated lists (colons deprecated) that become
``hostlist relay_from_hosts`` and ``domainlist relay_to_domains`` / ``local_domains``
(update-exim4.conf.conf(5), docs/sources.md#exim-debian). The RCPT ACL is a list of
statements, a verb at the start of a line followed by its conditions (chapter 42 "Access
control lists", docs/sources.md#exim-acl).

Standard library only (Python 3.7+): shipped to the managed host by Ansible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACL_VERBS = ("accept", "defer", "deny", "discard", "drop", "require", "warn")
_NAMED_LIST = re.compile(r"^\s*(hostlist|domainlist)\s+(\w+)\s*=\s*(.*)$")
_OPTION = re.compile(r"^\s*(\w+)\s*=\s*(.*)$")
_DEBIAN_VAR = re.compile(r"^(dc_\w+)=(.*)$")
_ACL_HEADER = re.compile(r"^(\w+):\s*$")
_BEGIN = re.compile(r"^\s*begin\s+(\w+)\s*$")


class EximConfigError(ValueError):
    """Configuration text this backend cannot read or write safely."""


# --- lists ----------------------------------------------------------------------------------


def split_exim_list(value: str) -> list[str]:
    """An Exim list's items: ``<X`` changes the separator to X, ``::`` is a literal colon."""
    text = value.strip()
    if text.startswith("<") and len(text) > 1 and not text[1].isspace():
        separator, text = text[1], text[2:]
        return [item.strip() for item in text.split(separator) if item.strip()]
    items = re.split(r"(?<!:):(?!:)", text)
    return [item.strip().replace("::", ":") for item in items if item.strip()]


def join_exim_list(items: list[str]) -> str:
    """An Exim list: `` : ``-separated, or ``<; `` when an item contains a colon (IPv6)."""
    if any(":" in item for item in items):
        return "<; " + " ; ".join(items)
    return " : ".join(items)


def split_debian_list(value: str) -> list[str]:
    """A dc_* list of update-exim4.conf.conf: semicolons (colons still accepted)."""
    text = value.strip()
    if text.startswith("<;"):
        text = text[2:]
    if ";" in text:
        return [item.strip() for item in text.split(";") if item.strip()]
    return split_exim_list(text)


def join_debian_list(items: list[str]) -> str:
    return " ; ".join(items)


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


# --- Debian's update-exim4.conf.conf --------------------------------------------------------


def debian_values(text: str) -> dict[str, str]:
    """The dc_* variables of update-exim4.conf.conf (shell assignments, quotes removed)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _DEBIAN_VAR.match(line.strip())
        if match:
            values[match.group(1)] = _unquote(match.group(2))
    return values


def set_debian_value(text: str, name: str, value: str) -> str:
    """`text` with ``name='value'`` (replaced where it is, appended when absent)."""
    if "'" in value or "\n" in value:
        raise EximConfigError(f"{name}: a value with a quote or newline cannot be written")
    line = f"{name}='{value}'"
    lines = text.splitlines()
    for index, current in enumerate(lines):
        if current.strip().startswith(f"{name}="):
            lines[index] = line
            return "\n".join(lines) + "\n"
    return "\n".join([*lines, line]) + "\n"


# --- plain exim.conf ------------------------------------------------------------------------


def logical_lines(text: str) -> list[tuple[int, int, str]]:
    """(first line, last line, joined text) of each logical line: a trailing backslash
    continues a line (Exim specification, chapter 6), comments and blank lines dropped."""
    out: list[tuple[int, int, str]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        first, joined = index, lines[index].rstrip()
        while joined.endswith("\\") and index + 1 < len(lines):
            index += 1
            joined = joined[:-1] + " " + lines[index].strip()
        index += 1
        if joined.strip() and not joined.lstrip().startswith("#"):
            out.append((first, index - 1, joined))
    return out


def main_section(text: str) -> list[tuple[int, int, str]]:
    """The logical lines before the first ``begin``."""
    out = []
    for entry in logical_lines(text):
        if _BEGIN.match(entry[2]):
            break
        out.append(entry)
    return out


def named_list(text: str, name: str) -> tuple[int, int, str] | None:
    """(first line, last line, value) of ``hostlist|domainlist name = value``, or None."""
    for first, last, line in main_section(text):
        match = _NAMED_LIST.match(line)
        if match and match.group(2) == name:
            return first, last, match.group(3).strip()
    return None


def main_option(text: str, name: str) -> str | None:
    for entry in main_section(text):
        match = _OPTION.match(entry[2])
        if match and match.group(1) == name:
            return match.group(2).strip()
    return None


def set_named_list(text: str, kind: str, name: str, items: list[str]) -> str:
    """`text` with the named list set to `items` (its lines replaced, or a line added at the
    top of the main section when it is absent)."""
    line = f"{kind} {name} = {join_exim_list(items)}".rstrip()
    lines = text.splitlines()
    found = named_list(text, name)
    if found is None:
        lines.insert(0, line)
    else:
        lines[found[0] : found[1] + 1] = [line]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AclStatement:
    """One ACL statement: its verb, its conditions/modifiers as written, and its lines."""

    verb: str
    conditions: tuple[tuple[str, str], ...]
    first: int
    last: int

    def condition(self, name: str) -> str | None:
        for key, value in self.conditions:
            if key == name:
                return value
        return None


def _words(line: str) -> list[tuple[str, str]]:
    """``verb  name = value`` or ``name = value`` into (name, value) pairs of one line."""
    match = re.match(r"^\s*(!?[\w]+)\s*=\s*(.*)$", line)
    return [(match.group(1), match.group(2).strip())] if match else []


def acl_statements(text: str, acl: str) -> list[AclStatement] | None:
    """The statements of ACL `acl` in the ``begin acl`` section, or None when absent."""
    statements: list[AclStatement] = []
    section, inside, found = "", False, False
    for first, last, line in logical_lines(text):
        begin = _BEGIN.match(line)
        if begin:
            section, inside = begin.group(1), False
            continue
        header = _ACL_HEADER.match(line.strip())
        if section == "acl" and header:
            inside = header.group(1) == acl
            found = found or inside
            continue
        if not inside:
            continue
        parts = line.split(None, 1)
        if parts and parts[0] in ACL_VERBS:
            rest = _words(parts[1]) if len(parts) > 1 else []
            statements.append(AclStatement(parts[0], tuple(rest), first, last))
        elif statements:
            previous = statements[-1]
            statements[-1] = AclStatement(
                previous.verb, previous.conditions + tuple(_words(line)), previous.first, last
            )
    return statements if found else None


def insert_lines(text: str, before: int, new_lines: list[str]) -> str:
    lines = text.splitlines()
    lines[before:before] = new_lines
    return "\n".join(lines) + "\n"


def remove_lines(text: str, first: int, last: int) -> str:
    lines = text.splitlines()
    del lines[first : last + 1]
    return "\n".join(lines) + "\n"
