"""The write payloads render to real PowerShell (tree-sitter grammar, no syntax errors) with
hostile parameter values carried as data only."""

from __future__ import annotations

import pytest
from exchange.powershell_syntax import assert_parses

from relayguard.exchange import payloads

HOSTILE = "x'; Remove-Item C:\\ -Recurse; $(Stop-Computer) `n \" & calc \r\n #"
WRITE_OPS = {
    "exchange55.write_config": {"Parameters": {"RelayAllowList": [HOSTILE], "RelayFlags": 10}},
    "modern.write_config": {"Actions": [{"Cmdlet": "Set-AcceptedDomain", "Identity": HOSTILE}]},
    "exchange.restart_service": {"Name": HOSTILE, "SmtpPort": 25},
    "exchange.restart_computer": {},
    "exchange.install_patch": {"Path": HOSTILE, "Sha256": "A" * 64, "Arguments": [HOSTILE]},
}


@pytest.mark.parametrize("op", sorted(WRITE_OPS))
def test_write_payload_parses_and_carries_values_as_data(op: str) -> None:
    rendered = payloads.render(op, WRITE_OPS[op])
    assert_parses(rendered.script)
    assert payloads.script_op(rendered.script) == op
    assert payloads.decode_params(rendered.script) == WRITE_OPS[op]
    assert "Remove-Item C:" not in rendered.script
