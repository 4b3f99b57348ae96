"""Text hygiene shared by every renderer: make untrusted strings visible and well-formed.

Banners, replies and transcripts come from servers we do not trust. Control characters
(ANSI escapes, NUL) are shown as ``\\xNN`` rather than passed through, and lone surrogates
(undecodable bytes) become U+FFFD, so every output format stays well-formed. Markup escaping
is each renderer's job; this module only makes the characters themselves safe.
"""

from __future__ import annotations

import re

# C0 controls except TAB/LF/CR, DEL, C1 controls, lone surrogates, and the two XML non-characters.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _show(match: re.Match[str]) -> str:
    char = match.group()
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    return f"\\x{ord(char):02x}"


def visible(text: object) -> str:
    """`text` as a string whose control characters are spelled out as ``\\xNN``."""
    return _INVISIBLE.sub(_show, "" if text is None else str(text))


def one_line(text: object) -> str:
    """`visible(text)` folded onto one line (table cells, JUnit messages)."""
    return " ".join(visible(text).split())
