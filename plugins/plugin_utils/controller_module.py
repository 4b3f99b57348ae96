"""Run one of this collection's controller-side modules inside the task's own worker.

secure-relay.yml calls relay_reachability, smtp_relay_probe, exchange_batch, smtp_mail_flow and
relay_report once per batch on the controller (run_once, delegate_to localhost). Run as
modules, each call builds an AnsiballZ payload, starts a Python and imports
ansible.module_utils.basic before the module's own work: about 0.35 s a call on the lab machine,
some twenty calls an enforce run (docs/performance.md). Their action plugins run the module's
own `main()` in the worker instead, with `ControllerModule` in place of AnsibleModule: the same
argument spec and checks (ArgumentSpecValidator, what AnsibleModule itself uses), check and diff
mode as the task has them, and every `no_log` value removed from the result as AnsibleModule
removes it. A task that runs elsewhere — another connection, another interpreter than the
controller's own, async — runs the module as Ansible always does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from functools import partial
from types import ModuleType
from typing import Any, NoReturn

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

LOCAL = ("local", "ansible.builtin.local")


class ModuleExit(Exception):
    """The module's result (exit_json or fail_json), carried out of its main()."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result


class ControllerModule:
    """The part of AnsibleModule the collection's controller-side modules use: `params`,
    `check_mode`, `_diff`, `warn`, `exit_json` and `fail_json` (which raise ModuleExit)."""

    def __init__(
        self,
        argument_spec: dict[str, Any],
        supports_check_mode: bool = False,
        *,
        args: Mapping[str, Any],
        check_mode: bool,
        diff: bool,
        **constraints: Any,
    ) -> None:
        self._warnings: list[str] = []
        self.check_mode = check_mode
        self._diff = diff
        checked = ArgumentSpecValidator(argument_spec, **constraints).validate(dict(args))
        self._no_log_values: set[str] = set(checked._no_log_values)
        self.params: dict[str, Any] = checked.validated_parameters
        if check_mode and not supports_check_mode:
            raise ModuleExit({"skipped": True, "msg": "check mode is not supported"})
        if checked.error_messages:
            self.fail_json(msg="; ".join(checked.error_messages))

    def warn(self, warning: str) -> None:
        self._warnings.append(warning)

    def _result(self, result: dict[str, Any]) -> dict[str, Any]:
        if self._warnings:
            result["warnings"] = list(self._warnings)
        cleaned: dict[str, Any] = remove_values(result, self._no_log_values)
        return cleaned

    def exit_json(self, **result: Any) -> NoReturn:
        raise ModuleExit(self._result({"changed": False, **result}))

    def fail_json(self, msg: str, **result: Any) -> NoReturn:
        raise ModuleExit(self._result({**result, "failed": True, "msg": msg}))


def run_main(
    main: Callable[..., None], args: Mapping[str, Any], *, check_mode: bool, diff: bool
) -> dict[str, Any]:
    """The result of a module's `main(module_class)` run with ControllerModule."""
    module_class = partial(ControllerModule, args=args, check_mode=check_mode, diff=diff)
    try:
        main(module_class)
    except ModuleExit as ended:
        return ended.result
    return {"failed": True, "msg": "the module ended without a result"}


class ControllerModuleAction(ActionBase):  # type: ignore[misc]
    """The action of a controller-side module: its main() in this worker when the task runs on
    the controller with the controller's own Python, else the module as usual."""

    MODULE: ModuleType
    _supports_check_mode = True
    _supports_async = True

    def run(
        self, tmp: str | None = None, task_vars: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        if result.get("skipped"):
            return result
        if not self._here(task_vars):
            # as ansible.builtin.normal runs a module
            wrap_async = self._task.async_val and not self._connection.has_native_async
            result = merge_hash(
                result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
            )
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result
        result.update(
            run_main(
                self.MODULE.main,
                self._task.args,
                check_mode=bool(self._task.check_mode),
                diff=bool(self._task.diff),
            )
        )
        return result

    def _here(self, task_vars: Mapping[str, Any]) -> bool:
        """The task runs on the controller, with the controller's own Python, not async."""
        connection = getattr(self._connection, "_load_name", None) or getattr(
            self._connection, "transport", ""
        )
        if self._task.async_val or connection not in LOCAL:
            return False
        wanted = self._interpreter(task_vars)
        return wanted is None or os.path.realpath(wanted) == os.path.realpath(sys.executable)

    def _interpreter(self, task_vars: Mapping[str, Any]) -> str | None:
        """The Python the module would run under, if the inventory names one (discovery,
        `auto`, would pick one the controller does not know: the controller's own is used)."""
        scope: Mapping[str, Any] = task_vars
        delegated = self._task.delegate_to
        if delegated:
            scope = (task_vars.get("ansible_delegated_vars") or {}).get(delegated) or {}
        value = scope.get("ansible_python_interpreter")
        if value is None:
            return None
        text = str(self._templar.template(value))
        return None if text.startswith("auto") else text
