"""Exim relay closure, the backend (I/O): facts, backup, apply, validate, reload, verify,
restore, as relay_backend.MtaBackend describes them.

* Facts: the file the relay lists live in (Debian's update-exim4.conf.conf, or a plain
  exim.conf) read and parsed by exim_plan.
* Validate: ``exim -C FILE -bV`` (the configuration parses), then ``exim -C FILE -bh ADDRESS``,
  a real SMTP session against the new configuration as if from an untrusted address
  (RFC 5737 documentation address by default; nothing is sent on the network): its RCPT to a
  foreign domain must be refused (Exim specification, chapter 5 "The Exim command line",
  docs/sources.md#exim-spec).
* Debian: ``update-exim4.conf`` regenerates the run-time configuration from the dc_* values
  (update-exim4.conf(8), docs/sources.md#exim-debian).
* Reload: SIGHUP to the daemon named by its pid file (the daemon re-executes itself and reads
  the configuration again); no daemon: nothing to reload.

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
    from exim_plan import DEBIAN, EXIM_RULES, EximDesired, EximFacts, debian_facts, plain_facts
    from exim_plan import plan_text as render_plan
    from relay_backend import Backup, Plan, evaluate
else:
    try:  # as Ansible ships it
        from ansible_collections.relayguard.mail.plugins.module_utils.exim_plan import (
            DEBIAN,
            EXIM_RULES,
            EximDesired,
            EximFacts,
            debian_facts,
            plain_facts,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.exim_plan import (
            plan_text as render_plan,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Backup,
            Plan,
            evaluate,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the lab)
        from exim_plan import DEBIAN, EXIM_RULES, EximDesired, EximFacts, debian_facts, plain_facts
        from exim_plan import plan_text as render_plan
        from relay_backend import Backup, Plan, evaluate

UNTRUSTED = "203.0.113.1"  # RFC 5737 TEST-NET-3: an outsider for `exim -bh`
FOREIGN_RECIPIENT = "relaytest@example.com"  # RFC 2606
_TIMEOUT = 60


class EximError(RuntimeError):
    """An Exim command failed or a file could not be written; one line for the user."""


class EximBackend:
    """The Exim backend over one configuration file.

    `config` is the file with the relay lists; `style` "debian" (update-exim4.conf.conf:
    `runtime_config` is what update-exim4.conf writes and Exim reads) or "plain" (then
    `runtime_config` is `config`). `pid_file` is the daemon's (Exim's pid_file_path).
    """

    name = "exim"

    def __init__(
        self,
        config: str,
        exim: str,
        style: str = "plain",
        runtime_config: str = "",
        pid_file: str = "",
        update_command: tuple[str, ...] = ("update-exim4.conf",),
        untrusted_address: str = UNTRUSTED,
    ) -> None:
        self.config = config
        self.exim = exim
        self.style = style
        self.runtime_config = runtime_config or config
        self.pid_file = pid_file
        self.update_command = update_command
        self.untrusted_address = untrusted_address

    # -- facts and plan ------------------------------------------------------------------

    def facts(self, desired: EximDesired) -> EximFacts:
        try:
            with open(self.config, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise EximError(f"cannot read {self.config}: {exc.strerror}") from None
        if self.style == DEBIAN:
            return debian_facts(self.config, text)
        return plain_facts(self.config, text)

    def plan(self, facts: EximFacts, desired: EximDesired) -> Plan:
        return evaluate(EXIM_RULES, facts, desired)

    # -- change --------------------------------------------------------------------------

    def backup(self, facts: EximFacts) -> Backup:
        copy = f"{self.config}.relayguard-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        shutil.copy2(self.config, copy)
        return Backup(((self.config, copy),))

    def apply(self, facts: EximFacts, plan: Plan) -> None:
        _write_like(self.config, render_plan(facts, plan.changes))
        self._regenerate()

    def _regenerate(self) -> None:
        if self.style != DEBIAN:
            return
        result = _run(list(self.update_command))
        if result.returncode != 0:
            raise EximError(f"{' '.join(self.update_command)} failed: {_output(result)}")

    def validate(self, facts: EximFacts) -> str | None:
        checked = _run([self.exim, "-C", self.runtime_config, "-bV"])
        if checked.returncode != 0:
            return f"exim -bV: {_output(checked)}"
        return self.relay_refused()

    def relay_refused(self) -> str | None:
        """None when an untrusted client's RCPT to a foreign domain is refused (exim -bh)."""
        session = (
            "HELO relayguard.invalid\r\n"
            "MAIL FROM:<relayguard@example.com>\r\n"
            f"RCPT TO:<{FOREIGN_RECIPIENT}>\r\nQUIT\r\n"
        )
        argv = [self.exim, "-C", self.runtime_config, "-bh", self.untrusted_address]
        result = _run(argv, session)
        replies = [line for line in result.stdout.splitlines() if line[:3].isdigit()]
        # 220 greeting, 250 HELO, 250 MAIL, then the RCPT's reply.
        if len(replies) < 4:
            return f"exim -bh {self.untrusted_address}: no RCPT reply: {_output(result)}"
        if replies[3].startswith("250"):
            return f"exim -bh {self.untrusted_address} accepted {FOREIGN_RECIPIENT}: open relay"
        return None

    def reload(self, facts: EximFacts) -> bool:
        pid = self._daemon_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGHUP)
        return True

    def _daemon_pid(self) -> int | None:
        if not self.pid_file:
            return None
        try:
            with open(self.pid_file, encoding="ascii") as handle:
                pid = int(handle.read().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def verify(self, desired: EximDesired) -> str | None:
        facts = self.facts(desired)
        left = self.plan(facts, desired)
        if left.changed:
            return "; ".join(finding[1] for finding in left.findings)
        return self.relay_refused()

    def restore(self, backup: Backup) -> None:
        for original, copy in backup.files:
            shutil.copy2(copy, original)
        self._regenerate()
        self.reload(self.facts(EximDesired(())))


def _write_like(path: str, text: str) -> None:
    """Replace `path` atomically, keeping its mode and owner."""
    status = os.stat(path)
    temporary = f"{path}.relayguard-new"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, status.st_mode & 0o7777)
    os.chown(temporary, status.st_uid, status.st_gid)
    os.replace(temporary, path)


def _run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(  # pylint: disable=ansible-bad-function
            argv, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EximError(f"{argv[0]}: {exc}") from None


def _output(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return " / ".join(text[-3:]) if text else f"exit {result.returncode}"
