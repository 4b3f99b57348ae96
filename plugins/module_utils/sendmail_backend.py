"""Sendmail relay closure, the backend (I/O): facts, backup, apply, validate, reload, verify,
restore, as relay_backend.MtaBackend describes them.

* Apply writes sendmail.mc and the access source, regenerates sendmail.cf with m4 and the
  access map with makemap (sendmail cf/README, docs/sources.md#sendmail-cf-readme).
* Validate runs the new sendmail.cf in address test mode (``sendmail -C cf -bt``, docs/
  sources.md#sendmail-op-guide) with the client macros of an untrusted address: the
  ``check_rcpt`` ruleset must answer ``$# error`` for a foreign recipient. Nothing is sent.
* Reload: SIGHUP to the daemon named by the first line of its pid file (sendmail re-executes
  itself and reads sendmail.cf again).

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay_backend import Backup, Plan, evaluate
    from sendmail_plan import SENDMAIL_RULES, SendmailDesired, SendmailFacts, planned_files
else:
    try:  # as Ansible ships it
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Backup,
            Plan,
            evaluate,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.sendmail_plan import (
            SENDMAIL_RULES,
            SendmailDesired,
            SendmailFacts,
            planned_files,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the lab)
        from relay_backend import Backup, Plan, evaluate
        from sendmail_plan import SENDMAIL_RULES, SendmailDesired, SendmailFacts, planned_files

UNTRUSTED = "203.0.113.1"  # RFC 5737 TEST-NET-3
FOREIGN_RECIPIENT = "relaytest@example.com"  # RFC 2606
_TIMEOUT = 120


class SendmailError(RuntimeError):
    """A Sendmail command failed or a file could not be written; one line for the user."""


class SendmailBackend:
    """The Sendmail backend over sendmail.mc (`mc`), the sendmail.cf m4 makes of it (`cf`)
    and the access source (`access`, its map built by `makemap`). `wrapper` is put before
    every sendmail command (e.g. to run it in a namespace); empty on a real host."""

    name = "sendmail"

    def __init__(
        self,
        mc: str,
        cf: str,
        access: str,
        sendmail: str = "sendmail",
        makemap: str = "makemap",
        pid_file: str = "",
        wrapper: tuple[str, ...] = (),
        untrusted_address: str = UNTRUSTED,
    ) -> None:
        self.mc = mc
        self.cf = cf
        self.access = access
        self.sendmail = sendmail
        self.makemap = makemap
        self.pid_file = pid_file
        self.wrapper = wrapper
        self.untrusted_address = untrusted_address

    def facts(self, desired: SendmailDesired) -> SendmailFacts:
        return SendmailFacts(self.mc, _read(self.mc), self.access, _read(self.access))

    def plan(self, facts: SendmailFacts, desired: SendmailDesired) -> Plan:
        return evaluate(SENDMAIL_RULES, facts, desired)

    def backup(self, facts: SendmailFacts) -> Backup:
        stamp = f"relayguard-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        pairs = []
        for path in (self.mc, self.access, self.cf):
            if os.path.exists(path):
                shutil.copy2(path, f"{path}.{stamp}")
                pairs.append((path, f"{path}.{stamp}"))
        return Backup(tuple(pairs))

    def apply(self, facts: SendmailFacts, plan: Plan) -> None:
        mc, access = planned_files(facts, plan.changes)
        _write(self.mc, mc)
        _write(self.access, access)
        self._build()

    def _build(self) -> None:
        made = _run(["m4", self.mc])
        if made.returncode != 0 or "ERROR" in made.stderr:
            raise SendmailError(f"m4 {self.mc}: {made.stderr.strip()}")
        _write(self.cf, made.stdout)
        mapped = _run([self.makemap, "-C", self.cf, "hash", self.access], _read(self.access))
        if mapped.returncode != 0:
            raise SendmailError(f"makemap hash {self.access}: {mapped.stderr.strip()}")

    def validate(self, facts: SendmailFacts) -> str | None:
        return self.relay_refused()

    def relay_refused(self) -> str | None:
        """None when check_rcpt refuses a foreign recipient for an untrusted client."""
        script = (
            f".D{{client_addr}}{self.untrusted_address}\n"
            ".D{client_name}outsider.invalid\n"
            f"check_rcpt <{FOREIGN_RECIPIENT}>\n"
        )
        argv = [*self.wrapper, self.sendmail, "-C", self.cf, "-bt"]
        result = _run(argv, script)
        answers = [line for line in result.stdout.splitlines() if line.startswith("check_rcpt")]
        if result.returncode != 0 or not answers:
            return f"sendmail -bt with {self.cf} failed: {result.stderr.strip()[-300:]}"
        if "$# error" not in answers[-1]:
            return f"check_rcpt accepts {FOREIGN_RECIPIENT} from {self.untrusted_address}: open"
        return None

    def reload(self, facts: SendmailFacts) -> bool:
        try:
            with open(self.pid_file, encoding="ascii") as handle:
                pid = int(handle.readline().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError):
            return False
        return True

    def verify(self, desired: SendmailDesired) -> str | None:
        left = self.plan(self.facts(desired), desired)
        if left.changed:
            return "; ".join(finding[1] for finding in left.findings)
        return self.relay_refused()

    def restore(self, backup: Backup) -> None:
        for original, copy in backup.files:
            shutil.copy2(copy, original)
        mapped = _run([self.makemap, "-C", self.cf, "hash", self.access], _read(self.access))
        if mapped.returncode != 0:
            raise SendmailError(f"makemap hash {self.access}: {mapped.stderr.strip()}")
        self.reload(self.facts(SendmailDesired(())))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise SendmailError(f"cannot read {path}: {exc.strerror}") from None


def _write(path: str, text: str) -> None:
    temporary = f"{path}.relayguard-new"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    if os.path.exists(path):
        status = os.stat(path)
        os.chmod(temporary, status.st_mode & 0o7777)
        os.chown(temporary, status.st_uid, status.st_gid)
    os.replace(temporary, path)


def _run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(  # pylint: disable=ansible-bad-function
            argv, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SendmailError(f"{argv[0]}: {exc}") from None
