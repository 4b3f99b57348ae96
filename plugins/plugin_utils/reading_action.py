"""The base of relayguard's internal actions that run on the controller and only read variables
(batch_result, relay_inputs, relay_plan): no connection to the host, no file transferred, the
same reading in check mode, no async."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase


class ReadingAction(ActionBase):  # type: ignore[misc]
    """An action on the controller that reads the task's variables; `read` is its work."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(
        self, tmp: str | None = None, task_vars: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        return self.read(task_vars, result)

    def read(self, task_vars: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """The task's result: `result` (ActionBase's start of it) completed."""
        raise NotImplementedError
