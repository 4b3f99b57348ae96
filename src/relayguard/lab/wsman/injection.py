"""Fault injection on a twin's WinRM endpoint: what goes wrong on the wire, on purpose.

Per endpoint, settable while it runs (``endpoint.faults``). Four kinds, matched against each
authenticated WS-Management request by action (Create/Command/Receive/Signal/Delete, or any)
and, for commands, by the payload op of the script (``exchange.restart_service``):

* ``DROP_REQUEST``  — close the connection without processing the request (it never ran);
* ``DROP_RESPONSE`` — process the request, then close without answering (it ran, the client
  cannot know: the case "never re-run a command that may have run" is about);
* ``HANG``          — hold the request unanswered until the lab changes the fault plan
  (set/add/clear) or the endpoint stops, then close (a host that stopped answering: the
  client's read timeout fires);
* ``FAIL_COMMAND``  — a Command runs as a failure: exit code and message on stderr, nothing
  else happens (the payload handler is not called).

A fault fires `times` times (None: until cleared). Op-level behaviour of a twin (an install
that fails, a restart that takes long) belongs to the op handlers, not here.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    DROP_REQUEST = "drop_request"
    DROP_RESPONSE = "drop_response"
    HANG = "hang"
    FAIL_COMMAND = "fail_command"


@dataclass(frozen=True)
class InjectedFault:
    kind: FaultKind
    action: str | None = None  # "Create", "Command", "Receive", "Signal", "Delete"; None = any
    op: str | None = None  # payload op a Command must carry; None = any command
    times: int | None = None  # None = until cleared
    exit_code: int = 1  # FAIL_COMMAND
    message: str = "The operation failed (fault injected by the relayguard lab)."

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        if self.kind is FaultKind.FAIL_COMMAND:
            if self.action not in (None, "Command"):
                raise ValueError("FAIL_COMMAND applies to Command requests only")
            if self.exit_code == 0:
                raise ValueError("FAIL_COMMAND needs a non-zero exit code")

    def matches(self, action: str, op: str | None) -> bool:
        if self.action is not None and self.action != action:
            return False
        return self.op is None or self.op == op


class FaultPlan:
    """The faults active on one endpoint; thread-safe. Changes wake hung requests."""

    def __init__(self, changed: threading.Condition) -> None:
        self._changed = changed
        self._faults: list[InjectedFault] = []
        self._generation = 0  # bumped by every change the lab makes; releases hung requests
        self._hung = 0  # requests held by wait_while_hung right now

    def set(self, *faults: InjectedFault) -> None:
        """Replace the active faults."""
        with self._changed:
            self._faults = list(faults)
            self._generation += 1
            self._changed.notify_all()

    def add(self, fault: InjectedFault) -> None:
        with self._changed:
            self._faults.append(fault)
            self._generation += 1
            self._changed.notify_all()

    def clear(self) -> None:
        self.set()

    def active(self) -> tuple[InjectedFault, ...]:
        with self._changed:
            return tuple(self._faults)

    def take(
        self, kinds: frozenset[FaultKind], action: str, op: str | None = None
    ) -> InjectedFault | None:
        """The first active fault of `kinds` matching the request, counted as fired."""
        with self._changed:
            for index, fault in enumerate(self._faults):
                if fault.kind in kinds and fault.matches(action, op):
                    if fault.times is not None:
                        if fault.times == 1:
                            del self._faults[index]
                        else:
                            self._faults[index] = dataclasses.replace(fault, times=fault.times - 1)
                    return fault
        return None

    def wait_while_hung(self, stopping: threading.Event) -> None:
        """Block until the plan changes (set/add/clear) or the endpoint stops."""
        with self._changed:
            generation = self._generation
            self._hung += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: stopping.is_set() or self._generation != generation)
            finally:
                self._hung -= 1

    def wait_hung(self, count: int, timeout: float) -> bool:
        """Whether `count` requests are held (a test waits for its hung client's request to
        be held before it changes the plan that releases it); False after `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._hung >= count, timeout)
