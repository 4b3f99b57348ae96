"""Action plugin smtp_relay_probe: the module's main() in the task's own worker when the task
runs on the controller with its own Python (plugins/plugin_utils/controller_module.py: no
AnsiballZ payload, no Python started per call); anywhere else, the module as usual."""

from __future__ import annotations

from ansible_collections.relayguard.mail.plugins.modules import smtp_relay_probe
from ansible_collections.relayguard.mail.plugins.plugin_utils.controller_module import (
    ControllerModuleAction,
)


class ActionModule(ControllerModuleAction):
    MODULE = smtp_relay_probe
