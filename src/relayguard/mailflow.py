"""Does legitimate mail still flow? One SMTP envelope per check, judged by its RCPT reply.

What `modules/smtp_mail_flow.py` runs after a relay change: an allowed network still relays,
mail for each inbound domain is still accepted, authenticated clients still relay. Each check
is one session (EHLO, [AUTH], MAIL FROM, RCPT TO, RSET, QUIT); DATA is never sent, so nothing
is delivered. `run_sessions` checks a whole batch's hosts at once.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from relayguard.probe.targets import TargetError, parse_target

MAX_WORKERS = 32


def run_check(
    session: Mapping[str, Any], host: str, port: int, check: Mapping[str, Any]
) -> dict[str, Any]:
    """One SMTP session: EHLO, [AUTH], MAIL, RCPT, RSET, QUIT; the RCPT reply judged."""
    source = (session["source_address"], 0) if session.get("source_address") else None
    result: dict[str, Any] = {
        "name": check["name"],
        "rcpt_to": check["rcpt_to"],
        "expect": check["expect"],
        "code": None,
        "reply": "",
    }
    try:
        with smtplib.SMTP(timeout=session["timeout"], source_address=source) as smtp:
            smtp.connect(host, port)
            smtp.ehlo(session["helo_name"])
            if check["authenticate"]:
                smtp.login(session.get("auth_username") or "", session.get("auth_password") or "")
            code, reply = smtp.mail(check["mail_from"])
            if 200 <= code < 300:
                code, reply = smtp.rcpt(check["rcpt_to"])
            result["code"], result["reply"] = code, reply.decode("utf-8", "replace")
            smtp.rset()
    except smtplib.SMTPAuthenticationError as exc:
        result["code"], result["reply"] = exc.smtp_code, f"AUTH refused: {exc.smtp_code}"
    except (OSError, smtplib.SMTPException) as exc:
        result["reply"] = f"session failed: {exc.__class__.__name__}: {exc}"
    accepted = result["code"] is not None and 200 <= result["code"] < 300
    result["passed"] = accepted == (check["expect"] == "accepted")
    return result


def failures(results: Sequence[Mapping[str, Any]]) -> str:
    """The failed checks in one message, naming each and quoting the server's reply."""
    return "; ".join(
        f"{r['name']}: expected {r['expect']}, RCPT TO:<{r['rcpt_to']}> got "
        f"{r['code'] or 'no reply'} {r['reply']}".rstrip()
        for r in results
        if not r["passed"]
    )


def run_session(session: Mapping[str, Any]) -> dict[str, Any]:
    """Every check of one session (one target); `failed` and `msg` when any did not pass."""
    try:
        target = parse_target(session["target"], session["port"])
    except TargetError as exc:
        return {"failed": True, "msg": f"target: {exc}", "checks": []}
    if any(c["authenticate"] for c in session["checks"]) and not session.get("auth_username"):
        return {
            "failed": True,
            "msg": "auth_username is required by the checks with authenticate=true",
            "checks": [],
        }
    results = [run_check(session, target.host, target.port, c) for c in session["checks"]]
    message = failures(results)
    return {"failed": bool(message), "msg": message, "checks": results}


def run_sessions(
    sessions: Sequence[Mapping[str, Any]], max_workers: int = 16
) -> list[dict[str, Any]]:
    """`run_session` for each, at most `max_workers` at once; results in the order given."""
    if not sessions:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, MAX_WORKERS))) as pool:
        return list(pool.map(run_session, sessions))
