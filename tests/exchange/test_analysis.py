"""The analysers on hand-built facts (no network): relay exposure and patch status, and the
parsing of payload documents (docs/payloads.md shapes) into ExchangeFacts."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest

from relayguard.exchange.analysis import (
    PatchState,
    parse_net_mask,
    parse_remote_range,
    patch_status,
    relay_exposure,
)
from relayguard.exchange.assess import exit_status, judge
from relayguard.exchange.catalog import load_catalog
from relayguard.exchange.facts import (
    ExchangeFacts,
    FactsError,
    facts_from_documents,
    flag_members,
)
from relayguard.exchange.patch_level import PatchPolicy
from relayguard.vocabulary import Platform, RuleResult, Verdict

TODAY = date(2026, 11, 27)
WORLD = ["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "0.0.0.0-255.255.255.255"]
ANON = "NT AUTHORITY\\ANONYMOUS LOGON"
ANY_RECIPIENT = "ms-Exch-SMTP-Accept-Any-Recipient"


def detect55(imc: str = "5.5.2650.1", newest: int = 2650) -> dict[str, Any]:
    parts = [int(p) for p in imc.split(".")]
    return {
        "ComputerName": "EX55A",
        "Exchange55": {
            "SetupKey": {
                "Path": "HKLM:\\SOFTWARE\\Microsoft\\Exchange\\Setup",
                "NewestBuild": newest,
                "ServicePackBuild": 3,
            },
            "ImcService": {
                "Name": "MSExchangeIMC",
                "DisplayName": "Microsoft Exchange Internet Mail Service",
                "Status": "Running",
                "StartType": "Automatic",
            },
            "Imc": {
                "Path": "C:\\exchsrvr\\connect\\msexcimc\\bin\\msexcimc.exe",
                "FileVersion": imc,
                "FileMajorPart": parts[0],
                "FileMinorPart": parts[1],
                "FileBuildPart": parts[2],
                "FilePrivatePart": parts[3],
            },
        },
        "Exchange15": None,
        "RebootPending": False,
    }


def config55(
    flags: int | None = 10,
    allow: list[str] | None = None,
    deny: list[str] | None = None,
    local: list[str] | None = None,
    reroute: bool | None = True,
    source: str = "directory",
) -> dict[str, Any]:
    return {
        "Parameters": {
            "Path": "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters",
            "RelayFlags": flags,
            "RelayAllowList": ["192.0.2.0;255.255.255.0"] if allow is None else allow,
            "RelayDenyList": deny or [],
            "RelayLocalIPList": local or [],
        },
        "Routing": {
            "Source": source,
            "RerouteIncoming": reroute,
            "RoutingList": None
            if reroute is None
            else [{"Domain": "corp.example", "Action": "Inbound", "Host": ""}],
        },
        "Service": {"Name": "MSExchangeIMC", "Status": "Running", "StartType": "Automatic"},
        "ImcFileVersion": "5.5.2650.1",
    }


def detect15(version: str = "15.2.1748.10") -> dict[str, Any]:
    major, minor, build, private = (int(p) for p in version.split("."))
    return {
        "ComputerName": "EX19A",
        "Exchange55": None,
        "Exchange15": {
            "SetupKey": {
                "Path": "HKLM:\\SOFTWARE\\Microsoft\\ExchangeServer\\v15\\Setup",
                "MsiInstallPath": "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\",
                "MsiProductMajor": major,
                "MsiProductMinor": minor,
                "MsiBuildMajor": build,
                "MsiBuildMinor": private,
            },
            "ExSetup": {
                "Path": "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\bin\\ExSetup.exe",
                "FileVersion": f"{major}.{minor:02d}.{build}.{private:03d}",
                "FileMajorPart": major,
                "FileMinorPart": minor,
                "FileBuildPart": build,
                "FilePrivatePart": private,
            },
            "UpdatesKey": None,
            "InstalledUpdates": [],
            "TransportService": None,
        },
        "RebootPending": False,
    }


def connector(name: str, ranges: list[str] | str = WORLD, **extra: Any) -> dict[str, Any]:
    doc = {
        "Identity": f"EX19A\\{name}",
        "Name": name,
        "Server": "EX19A",
        "Bindings": ["0.0.0.0:25"],
        "RemoteIPRanges": ranges,
        "PermissionGroups": "AnonymousUsers, ExchangeServers",
        "AuthMechanism": "Tls, ExchangeServer",
        "TransportRole": "FrontendTransport",
        "Enabled": True,
        "Fqdn": "ex19a.corp.example",
        "TarpitInterval": "00:00:05",
        "MaxRecipientsPerMessage": 200,
    }
    doc.update(extra)
    return doc


def ace(name: str, right: str = ANY_RECIPIENT, deny: bool = False) -> dict[str, Any]:
    return {
        "Identity": f"EX19A\\{name}",
        "User": ANON,
        "ExtendedRights": [right],
        "AccessRights": ["ExtendedRight"],
        "Deny": deny,
        "IsInherited": False,
    }


def config15(
    connectors: list[dict[str, Any]] | None = None,
    aces: list[dict[str, Any]] | None = None,
    domains: list[dict[str, Any]] | None = None,
    validation: bool = True,
) -> dict[str, Any]:
    return {
        "ExchangeShell": "SnapIn",
        "Server": "EX19A",
        "ReceiveConnectors": [connector("Default Frontend EX19A")]
        if connectors is None
        else connectors,
        "AnonymousPermissions": aces or [],
        "AcceptedDomains": domains
        or [
            {
                "Name": "corp.example",
                "DomainName": "corp.example",
                "DomainType": "Authoritative",
                "Default": True,
            }
        ],
        "RecipientFilterConfig": {"Enabled": True, "RecipientValidationEnabled": validation},
    }


def facts55(**config: Any) -> ExchangeFacts:
    imc = config.pop("imc", "5.5.2650.1")
    newest = config.pop("newest", 2650)
    return facts_from_documents("h", detect55(imc, newest), config55(**config), as_of=TODAY)


def facts15(version: str = "15.2.1748.10", **config: Any) -> ExchangeFacts:
    return facts_from_documents("h", detect15(version), config15(**config), as_of=TODAY)


def ids(facts: ExchangeFacts, opening: bool = True) -> set[str]:
    return {f.id for f in relay_exposure(facts).findings if f.opens_relay is opening}


# --- Exchange 5.5 -----------------------------------------------------------------------------


def test_55_restricted_and_patched_is_closed() -> None:
    facts = facts55()
    exposure = relay_exposure(facts)
    assert exposure.verdict is Verdict.CLOSED and exposure.findings == ()
    assert patch_status(facts).state is PatchState.PRESENT
    assert exit_status([judge(facts)]) == 0


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (None, "ims-no-routing-restrictions"),
        (0, "ims-no-routing-restrictions"),
        (1, "ims-deny-list-only"),
    ],
)
def test_55_missing_or_deny_only_restrictions_open(flags: int | None, expected: str) -> None:
    facts = facts55(flags=flags)
    assert ids(facts) == {expected}
    assert relay_exposure(facts).verdict is Verdict.OPEN


@pytest.mark.parametrize("flags", [2, 4, 8, 10, 11, 0xFFFFFFFF])
def test_55_any_grant_bit_is_a_restriction(flags: int) -> None:
    assert ids(facts55(flags=flags)) == set()


@pytest.mark.parametrize(
    ("entry", "wide"),
    [
        ("127.0.0.0;255.0.0.0", True),
        ("0.0.0.0;0.0.0.0", True),
        ("10.0.0.0;255.254.0.0", True),
        ("10.1.0.0;255.255.0.0", False),
        ("192.0.2.10;255.255.255.255", False),
        ("not an entry", False),  # malformed lines are skipped by the IMS: they grant nothing
        ("192.0.2.0/24", False),
    ],
)
def test_55_allow_list_width(entry: str, wide: bool) -> None:
    found = ids(facts55(flags=2, allow=[entry]))
    assert found == ({"ims-allow-list-too-wide"} if wide else set())


def test_55_allow_list_is_ignored_without_the_allow_bit() -> None:
    assert ids(facts55(flags=8, allow=["0.0.0.0;0.0.0.0"])) == set()


def test_55_local_ip_list_is_a_note() -> None:
    facts = facts55(flags=4, local=["192.0.2.25;255.255.255.255"])
    assert ids(facts) == set() and ids(facts, False) == {"ims-local-ip-list"}
    assert ids(facts55(flags=2, local=["192.0.2.25;255.255.255.255"]), False) == set()


def test_55_do_not_reroute_opens() -> None:
    facts = facts55(reroute=False)
    assert ids(facts) == {"ims-do-not-reroute"}


def test_55_unknown_routing_tab_is_inconclusive() -> None:
    facts = facts55(reroute=None, source="unknown")
    exposure = relay_exposure(facts)
    assert exposure.verdict is Verdict.INCONCLUSIVE
    assert any("Routing tab" in u for u in exposure.unknowns)
    assert exit_status([judge(facts)]) == 3


@pytest.mark.parametrize(
    ("imc", "state"),
    [
        ("5.5.2448.0", PatchState.MISSING),
        ("5.5.2650.0", PatchState.MISSING),
        ("5.5.2650.1", PatchState.PRESENT),
        ("5.5.2650.10", PatchState.PRESENT),
        ("5.5.2653.12", PatchState.PRESENT),
    ],
)
def test_55_patch_by_msexcimc_version(imc: str, state: PatchState) -> None:
    facts = facts55(imc=imc)
    status = patch_status(facts)
    assert status.state is state
    assert any("Q237927" in reason for reason in status.reasons)
    encapsulation = "ims-encapsulated-address-relay" in ids(facts)
    assert encapsulation is (state is PatchState.MISSING)


def test_55_patch_unknown_without_the_binary() -> None:
    detect = detect55()
    detect["Exchange55"]["Imc"] = None
    detect["Exchange55"]["SetupKey"]["NewestBuild"] = None
    facts = facts_from_documents("h", detect, config55(), as_of=TODAY)
    assert patch_status(facts).state is PatchState.UNKNOWN
    assert any("msexcimc.exe was not found" in note for note in facts.notes)


# --- Exchange 2013 and later -----------------------------------------------------------------


def test_modern_default_is_closed() -> None:
    facts = facts15()
    exposure = relay_exposure(facts)
    assert exposure.verdict is Verdict.CLOSED and exposure.findings == ()


def test_anonymous_accept_any_recipient_on_a_world_connector_opens() -> None:
    facts = facts15(aces=[ace("Default Frontend EX19A")])
    [finding] = relay_exposure(facts).findings
    assert finding.id == "anonymous-accept-any-recipient" and finding.opens_relay
    assert finding.subject == "EX19A\\Default Frontend EX19A"


def test_a_deny_ace_wins() -> None:
    name = "Default Frontend EX19A"
    facts = facts15(aces=[ace(name), ace(name, deny=True)])
    assert relay_exposure(facts).findings == ()


def test_other_anonymous_rights_do_not_relay() -> None:
    facts = facts15(aces=[ace("Default Frontend EX19A", "ms-Exch-SMTP-Submit")])
    assert relay_exposure(facts).findings == ()


@pytest.mark.parametrize(
    ("ranges", "opens"),
    [
        (["127.0.59.0/24"], False),
        (["192.0.2.10", "198.51.100.0/24"], False),
        ("203.0.113.0-203.0.113.255", False),  # a single value ConvertTo-Json unwrapped
        (["10.0.0.0/8"], True),
        (["0.0.0.0-255.255.255.255"], True),
        (["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], True),
    ],
)
def test_dedicated_relay_connector_is_judged_by_its_ranges(
    ranges: list[str] | str, opens: bool
) -> None:
    facts = facts15(
        connectors=[connector("Default Frontend EX19A"), connector("Relay", ranges)],
        aces=[ace("Relay")],
    )
    exposure = relay_exposure(facts)
    [check] = [c for c in exposure.checks if c.id == "anonymous-accept-any-recipient"]
    assert check.subject == "EX19A\\Relay" and check.opens_relay is opens
    # A dedicated relay connector limited to its ranges passes; one open to the world fails.
    assert check.result is (RuleResult.FAIL if opens else RuleResult.PASS)
    assert [f.id for f in exposure.findings] == (
        ["anonymous-accept-any-recipient"] if opens else []
    )
    assert exposure.verdict is (Verdict.OPEN if opens else Verdict.CLOSED)


def test_a_disabled_connector_does_not_relay() -> None:
    facts = facts15(connectors=[connector("Old", Enabled=False)], aces=[ace("Old")])
    assert relay_exposure(facts).findings == ()


def test_unreadable_ranges_are_inconclusive() -> None:
    facts = facts15(connectors=[connector("Relay", ["somewhere"])], aces=[ace("Relay")])
    exposure = relay_exposure(facts)
    assert exposure.verdict is Verdict.INCONCLUSIVE and exposure.unknowns


def test_external_authoritative_on_an_internet_connector_opens() -> None:
    mech = "Tls, ExternalAuthoritative"
    facts = facts15(connectors=[connector("Partner", AuthMechanism=mech)])
    assert ids(facts) == {"external-authoritative"}
    limited = facts15(connectors=[connector("Partner", ["192.0.2.0/24"], AuthMechanism=mech)])
    assert ids(limited) == set() and ids(limited, False) == set()
    [check] = [c for c in relay_exposure(limited).checks if c.id == "external-authoritative"]
    assert check.result is RuleResult.PASS and check.subject == "EX19A\\Partner"
    assert "limited to 192.0.2.0/24" in check.reason


@pytest.mark.parametrize(
    ("domain", "domain_type", "opening", "noted"),
    [
        ("*", "ExternalRelay", {"accepted-domain-star"}, set()),
        ("*", "InternalRelay", {"accepted-domain-star"}, set()),
        ("partner.example", "InternalRelay", set(), {"accepted-domain-relay"}),
        ("*.partner.example", "ExternalRelay", set(), {"accepted-domain-relay"}),
        ("corp.example", "Authoritative", set(), set()),
    ],
)
def test_accepted_domains(
    domain: str, domain_type: str, opening: set[str], noted: set[str]
) -> None:
    domains = [
        {
            "Name": "corp.example",
            "DomainName": "corp.example",
            "DomainType": "Authoritative",
            "Default": True,
        },
        {"Name": f"d-{domain}", "DomainName": domain, "DomainType": domain_type, "Default": False},
    ]
    facts = facts15(domains=domains)
    assert ids(facts) == opening and ids(facts, False) == noted


def test_recipient_validation_off_is_a_note_not_a_relay() -> None:
    facts = facts15(validation=False)
    assert ids(facts) == set() and ids(facts, False) == {"recipient-validation-off"}
    assert relay_exposure(facts).verdict is Verdict.CLOSED


@pytest.mark.parametrize(
    ("version", "platform", "state"),
    [
        ("15.2.1748.10", Platform.EXCHANGE2019, PatchState.MISSING),  # CU15 without its SUs
        ("15.1.2507.6", Platform.EXCHANGE2016, PatchState.MISSING),
        ("15.0.1497.2", Platform.EXCHANGE2013, PatchState.MISSING),
        ("15.2.1748.9999", Platform.EXCHANGE2019, PatchState.UNKNOWN),  # not in the catalog
    ],
)
def test_modern_patch_status(version: str, platform: Platform, state: PatchState) -> None:
    facts = facts15(version)
    assert facts.platform is platform
    status = patch_status(facts)
    assert status.state is state and status.reasons
    if state is PatchState.UNKNOWN:
        assert "nearest known" in status.reasons[0]


def test_a_build_below_the_newest_known_update_is_missing_even_if_unknown() -> None:
    status = patch_status(facts15("15.2.1748.11"))  # between CU15 and its first HU
    assert status.state is PatchState.MISSING
    assert "nearest known" in status.reasons[0]


def test_subscription_edition_is_present_only_at_its_newest_update() -> None:
    catalog = load_catalog()
    product = catalog.products["exchangese"]
    rows = [r for r in catalog.builds if r.product == "exchangese"]
    newest = max(rows, key=lambda r: r.version.key)
    assert newest.level in product.supported_levels, "the catalog lists a supported SE level"
    facts = facts15(str(newest.version))
    assert facts.platform is Platform.EXCHANGESE
    status = patch_status(facts, as_of=TODAY)
    assert status.state is PatchState.PRESENT and status.required == str(newest.version)
    rtm = patch_status(facts15("15.2.2562.17"), as_of=TODAY)
    assert rtm.state is PatchState.MISSING and rtm.required == str(newest.version)
    assert rtm.detail is not None and rtm.detail.product_in_support is True


def test_modern_patch_status_names_the_policy_and_the_required_build() -> None:
    lenient = patch_status(facts15("15.2.1544.48"), policy=PatchPolicy.CU_N_MINUS_1)
    strict = patch_status(facts15("15.2.1544.48"))
    assert lenient.state is PatchState.PRESENT and lenient.required == "15.2.1544.48"
    assert strict.state is PatchState.MISSING and strict.required == "15.2.1748.53"
    assert strict.to_dict()["patch_level"]["policy"] == "latest"
    assert exit_status([judge(facts15("15.2.1544.48"))]) == 2


# --- parsing ---------------------------------------------------------------------------------


def test_no_exchange_is_unknown_and_inconclusive() -> None:
    detect = {"ComputerName": "WEB1", "Exchange55": None, "Exchange15": None}
    facts = facts_from_documents("h", detect, None, as_of=TODAY)
    assert facts.platform is Platform.UNKNOWN
    assert relay_exposure(facts).verdict is Verdict.INCONCLUSIVE
    assert patch_status(facts).state is PatchState.UNKNOWN


def test_missing_exsetup_falls_back_to_the_setup_key() -> None:
    detect = detect15("15.2.1544.4")
    detect["Exchange15"]["ExSetup"] = None
    facts = facts_from_documents("h", detect, config15(), as_of=TODAY)
    assert facts.version == "15.2.1544.4" and facts.build is not None and facts.build.known
    assert any("Setup key" in note for note in facts.notes)


@pytest.mark.parametrize(
    "break_it",
    [
        lambda c: c.pop("RecipientFilterConfig"),
        lambda c: c["ReceiveConnectors"][0].__setitem__("Enabled", "yes"),
        lambda c: c["ReceiveConnectors"][0].__setitem__("Bindings", {"a": 1}),
        lambda c: c.__setitem__("ExchangeShell", None),
    ],
)
def test_malformed_documents_are_refused(break_it: Any) -> None:
    config = copy.deepcopy(config15())
    break_it(config)
    with pytest.raises(FactsError):
        facts_from_documents("h", detect15(), config, as_of=TODAY)


@pytest.mark.parametrize(
    ("text", "members"),
    [
        ("AnonymousUsers, ExchangeServers", ("AnonymousUsers", "ExchangeServers")),
        ("None", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_flag_members(text: str | None, members: tuple[str, ...]) -> None:
    assert flag_members(text) == members


def test_range_parsers() -> None:
    assert str(parse_net_mask("192.0.2.0;255.255.255.0")) == "192.0.2.0;255.255.255.0"
    assert str(parse_net_mask("192.0.2.7")) == "192.0.2.7;255.255.255.255"  # KB Q193922
    assert parse_net_mask("192.0.2.0;mask") is None
    assert parse_net_mask("host.example") is None
    assert parse_remote_range("192.0.2.1-192.0.2.4") is not None
    assert parse_remote_range("192.0.2.9-192.0.2.1") is None
    assert parse_remote_range("2001:db8::/32") is not None


def test_facts_to_dict_is_json_ready() -> None:
    for facts in (facts55(), facts15(aces=[ace("Default Frontend EX19A")])):
        data = facts.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert data["platform"] == facts.platform.value
