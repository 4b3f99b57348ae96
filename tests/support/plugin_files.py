"""A collection plugin file loaded as a plain module, for unit tests of its pure functions
(plugins/action, plugins/plugin_utils: not importable by package name outside a collection
path). Their own imports of the collection's plugin_utils (`ansible_collections.relayguard.
mail...`) resolve through the work tree's link, collections/ansible_collections/relayguard/mail."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load(relative: str, name: str) -> ModuleType:
    """The module at ROOT/`relative`, loaded under `name`."""
    collections = str(ROOT / "collections")
    if collections not in sys.path:
        sys.path.append(collections)
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
