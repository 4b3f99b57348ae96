"""Import of module_utils/postfix_relay_backend.py for the tests (it lives outside src/).

On a managed host Ansible ships it (and command_runner.py, which it imports) under
ansible_collections.relayguard.mail.plugins.module_utils; here it is loaded from the repository
by path, exactly as written.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from relayguard.lab import module_utils

REPO = Path(__file__).resolve().parents[2]
BACKEND_PATH = REPO / "plugins" / "module_utils" / "postfix_relay_backend.py"
MODULE_PATH = REPO / "plugins" / "modules" / "postfix_relay.py"


def _load() -> ModuleType:
    # the lab's loader: by path, under the module's own name (its command_runner import
    # falls back to that name outside Ansible)
    return module_utils.load("postfix_relay_backend")


backend = _load()
