"""How `make test` spreads the suite over pytest-xdist workers.

Each test file is one unit of work, run whole on one worker, so its module-scoped lab fleet
is brought up once (xdist's own `--dist loadfile`). Files that share state outside the network
(support/private_network.py gives each worker its own loopback, not its own filesystem) form
one unit together. The heaviest files — the ones running secure-relay.yml on a lab fleet, the
real-server and 1,000-host tests — are handed out first, so a long one does not start last
and stretch the run (longest-processing-time first, from the durations `make test` prints).
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

# Files whose tests share state outside the network: one worker runs the whole group.
SHARED: dict[str, str] = {
    # both build the collection artifact and the EE context under the repository's dist/
    "tests/collection/test_collection.py": "artifacts",
    "tests/test_execution_environment.py": "artifacts",
}

# The slowest files first (measured: `pytest --durations`; minutes each on two cores).
HEAVY_FIRST: tuple[str, ...] = (
    "tests/playbook/test_enforce.py",
    "tests/playbook/test_compliance.py",
    "tests/postfix/test_probe_module_runs.py",
    "tests/playbook/test_exchange55_management_host.py",
    "tests/playbook/test_exchange55_smb.py",
    "tests/playbook/test_faults_in_run.py",
    "tests/probe/test_fleet_scale.py",
    "tests/playbook/test_rollback.py",
    "tests/playbook/test_mta_wiring.py",
    "tests/playbook/test_per_host_results.py",
    "tests/postfix/test_nmap_agreement.py",
    "tests/exchange_remediation/test_fault_matrix.py",
    "tests/exchange_remediation/test_faults.py",
    "tests/playbook/test_secrets_vvv.py",
    "tests/playbook/test_tags.py",
    "tests/postfix_remediation/test_backend_real.py",
    "tests/exchange_remediation/test_end_to_end.py",
)


def unit_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return SHARED.get(path, path)


def heavy_first(items: list[pytest.Item]) -> None:
    """Reorders the collection in place: the heavy files first, in HEAVY_FIRST's order, then
    the rest as collected (a stable sort: each file's own order is kept)."""
    rank = {path: i for i, path in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


class FileGroupScheduling(LoadScopeScheduling):
    """LoadScopeScheduling with a file (or a SHARED group) as the scope, in collection order
    (heavy_first's, not xdist's "most tests first")."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)
