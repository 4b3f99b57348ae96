"""A small smtplib wrapper: one RCPT attempt from a chosen source address."""

from __future__ import annotations

import smtplib


def rcpt(
    target: tuple[str, int],
    recipient: str,
    *,
    source: str,
    sender: str = "<antispam@example.com>",
    login: tuple[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, str]:
    """EHLO, optional AUTH LOGIN, MAIL, RCPT; the RCPT reply (or the MAIL reply if refused)."""
    with smtplib.SMTP(target[0], target[1], timeout=timeout, source_address=(source, 0)) as s:
        s.ehlo("client.example.org")
        if login is not None:
            s.login(*login)
        code, text = s.docmd("MAIL", f"FROM:{sender}")
        if code != 250:
            return code, text.decode()
        code, text = s.docmd("RCPT", f"TO:{recipient}")
        return code, text.decode()


def greeting(target: tuple[str, int], *, source: str) -> tuple[int, str]:
    s = smtplib.SMTP(timeout=30, source_address=(source, 0))
    try:
        code, text = s.connect(target[0], target[1])
        return code, text.decode()
    finally:
        s.close()


def banner(target: tuple[str, int], *, source: str) -> str:
    code, text = greeting(target, source=source)
    assert code == 220, (code, text)
    return text
