"""The collection's target-side helpers (plugins/module_utils/), for the lab's real servers.

The lab runs real Postfix with the same code the postfix_relay module ships to a managed host
(`command_runner`: one implementation, standard library only). Outside Ansible nothing puts
`ansible_collections` on sys.path, so a file is loaded from this checkout by path under its
top-level name: the name mypy checks it under (pyproject.toml: files) and the one the
backend's import falls back to outside Ansible; the directory joins sys.path so the files it
imports (the Postfix backend is several) resolve under those names too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

MODULE_UTILS = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"


def load(name: str) -> ModuleType:
    """plugins/module_utils/<name>.py as module `name` (once per process)."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    if str(MODULE_UTILS) not in sys.path:  # its siblings import each other by top-level name
        sys.path.append(str(MODULE_UTILS))
    path = MODULE_UTILS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"{path} not found: the lab runs from a checkout of relayguard")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
