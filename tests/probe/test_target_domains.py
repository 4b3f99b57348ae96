"""A local domain per target: one probe of a batch whose servers accept mail for different
domains uses each server's own (the encapsulation tests and the RFC 2505 checks are about it).
"""

from __future__ import annotations

import json

import pytest
from support.scripted_smtp import Script, relay_policy, serve

from relayguard.probe import probe_targets
from relayguard.probe.options import checked_options
from relayguard.probe.targets import Target
from relayguard.validate import InputError


def test_each_target_gets_its_own_domain_the_rest_the_default() -> None:
    with (
        serve(Script(relay_policy(False)), host="127.0.2.196") as first,
        serve(Script(relay_policy(False)), host="127.0.2.197") as second,
        serve(Script(relay_policy(False)), host="127.0.2.198") as third,
    ):
        options = checked_options(
            timeout=3,
            local_domain="default.example",
            local_domains={first.target: "one.example", "127.0.2.197": "two.example"},
        )
        results = probe_targets([first.target, second.target, third.target], options)
    domains = {r.target: r.local_domain for r in results}
    assert domains == {
        first.target: "one.example",
        second.target: "two.example",  # a key without a port: every port of that host
        third.target: "default.example",
    }
    # the tests really used it: the own-domain sender check wrote to each server's own domain
    assert any("@one.example" in c for c in first.stats.commands)
    assert not any("@one.example" in c or "@two.example" in c for c in third.stats.commands)


def test_for_target_matches_host_and_port() -> None:
    options = checked_options(
        local_domains={"[::1]:587": "six.example", "mx.example.org": "m.example"}
    )
    assert options.for_target(Target("::1", 587)).local_domain == "six.example"
    assert options.for_target(Target("::1", 25)).local_domain is None
    assert options.for_target(Target("mx.example.org", 465)).local_domain == "m.example"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (["a.example"], "is not a mapping"),
        ({"bad host!": "a.example"}, "bad host!"),
        ({"mx.example.org": "not a domain"}, "local_domains[mx.example.org]"),
    ],
)
def test_bad_mappings_are_named(value: object, named: str) -> None:
    with pytest.raises(InputError, match="local_domains") as caught:
        checked_options(local_domains=value)
    assert named in str(caught.value)


def test_cli_takes_a_default_and_per_target_domains(capsys: pytest.CaptureFixture[str]) -> None:
    from relayguard.cli import main

    with (
        serve(Script(relay_policy(False)), host="127.0.2.196") as first,
        serve(Script(relay_policy(False)), host="127.0.2.197") as second,
    ):
        argv = ["probe", "--json", "--timeout", "3", first.target, second.target]
        status = main(
            [*argv, "--local-domain", "d.example", "--local-domain", f"{first.target}=o.example"]
        )
    assert status == 0
    hosts = {h["target"]: h["local_domain"] for h in json.loads(capsys.readouterr().out)["hosts"]}
    assert hosts == {first.target: "o.example", second.target: "d.example"}


def test_cli_refuses_two_plain_domains(capsys: pytest.CaptureFixture[str]) -> None:
    from relayguard.cli import main

    status = main(
        ["probe", "127.0.2.196:25", "--local-domain", "a.example", "--local-domain", "b.example"]
    )
    assert status != 0
    assert "--local-domain" in capsys.readouterr().err
