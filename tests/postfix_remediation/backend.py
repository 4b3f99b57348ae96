"""Import of module_utils/postfix_relay_backend.py for the tests (it lives outside src/).

On a managed host Ansible ships it as ansible.module_utils.postfix_relay_backend; here it is
loaded from the repository by path, exactly as written.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
BACKEND_PATH = REPO / "plugins" / "module_utils" / "postfix_relay_backend.py"
MODULE_PATH = REPO / "plugins" / "modules" / "postfix_relay.py"


def _load() -> ModuleType:
    name = "postfix_relay_backend"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BACKEND_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


backend = _load()
