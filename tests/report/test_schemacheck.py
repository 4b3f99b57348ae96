"""The compiled schema check agrees with jsonschema: on the sample reports and a probe document
as they are, and mutated at every place the schemas describe (each value replaced by values
of every JSON type, each key removed, an unknown key added, each array grown)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest

from relayguard.report import ReportInvalid, validate_probe, validate_report
from relayguard.report.schema import (
    PROBE_SCHEMA_FILE,
    REPORT_SCHEMA_FILE,
    _fast_check,
    _validator,
    schema_problems,
)
from relayguard.report.schemacheck import Unsupported, compile_schema
from report.samples import audit_report, fleet_report, probe_sample

REPLACEMENTS: tuple[Any, ...] = (None, True, -1, 1.5, "", "x", [None], {"x": 1})
Path = tuple[str | int, ...]


def _places(value: Any, path: Path = ()) -> Iterator[Path]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, (*path, index))


def _kind(path: Path) -> str:
    """A place up to the array indices: one mutation site per thing the schema describes."""
    return re.sub(r"\d+", "#", "/".join(str(p) for p in path))


def _parent(doc: Any, path: Path) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _mutants(doc: dict[str, Any], seen: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Mutants of `doc` at each kind of place not in `seen` (which they are added to)."""
    for path in list(_places(doc)):
        if _kind(path) in seen:
            continue
        seen.add(_kind(path))
        target = _parent(doc, path)[path[-1]] if path else doc
        if path:
            for replacement in REPLACEMENTS:
                mutant = copy.deepcopy(doc)
                _parent(mutant, path)[path[-1]] = copy.deepcopy(replacement)
                yield f"{_kind(path)} = {replacement!r}", mutant
            if isinstance(_parent(doc, path), dict):
                mutant = copy.deepcopy(doc)
                del _parent(mutant, path)[path[-1]]
                yield f"del {_kind(path)}", mutant
        if isinstance(target, dict):
            mutant = copy.deepcopy(doc)
            (_parent(mutant, path)[path[-1]] if path else mutant)["unexpected"] = 1
            yield f"{_kind(path)} + unexpected key", mutant
        if isinstance(target, list):
            mutant = copy.deepcopy(doc)
            _parent(mutant, path)[path[-1]].append(None)
            yield f"{_kind(path)} + null item", mutant


def _one_host_each(doc: dict[str, Any], *hosts: int) -> list[dict[str, Any]]:
    """`doc` with one of its hosts, for each of `hosts`: each mutant is validated by
    jsonschema too, so keep them small; a place the hosts share is mutated in the first."""
    return [{**doc, "hosts": [doc["hosts"][i]]} for i in hosts]


# fleet: remediated Exchange 5.5, rolled back, failed, unreachable; audit: rule findings
CASES = {
    "fleet": (lambda: _one_host_each(fleet_report(), 0, 3, 6, 7), REPORT_SCHEMA_FILE),
    "audit": (lambda: _one_host_each(audit_report(), 0), REPORT_SCHEMA_FILE),
    "probe": (lambda: [probe_sample()], PROBE_SCHEMA_FILE),
}


def test_the_shipped_schemas_compile():
    """Both schemas are within what the compiler checks: the fast path is the one taken."""
    assert _fast_check(REPORT_SCHEMA_FILE) is not None
    assert _fast_check(PROBE_SCHEMA_FILE) is not None


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_check_agrees_with_jsonschema_on_every_mutant(name: str):
    make, schema = CASES[name]
    fast = _fast_check(schema)
    assert fast is not None
    validator = _validator(schema)
    disagree, refused, seen = [], 0, set[str]()
    for doc in make():
        assert fast(doc) and not list(validator.iter_errors(doc)), name
        for count, (what, mutant) in enumerate(_mutants(doc, seen)):
            accepted = fast(mutant)
            # every mutant it accepts must be valid (never looser: the property that keeps
            # reports right); of those it refuses, every third is checked too (a refused valid
            # document only costs time, and jsonschema is what makes this test slow)
            if not accepted and count % 3:
                refused += 1
                continue
            valid = not any(True for _ in validator.iter_errors(mutant))
            refused += not valid
            if accepted != valid:
                disagree.append(f"{what}: jsonschema {'accepts' if valid else 'refuses'}")
    assert disagree == []
    assert refused > 100  # the mutants do reach the schema's assertions


def test_a_refused_document_is_still_named_by_jsonschema(fleet_doc: dict[str, Any]):
    doc = copy.deepcopy(fleet_doc)
    doc["hosts"][3]["status"] = "broken"
    doc["hosts"][1]["before"]["tests"][0]["code"] = "250"
    problems = schema_problems(doc, REPORT_SCHEMA_FILE)
    assert [p.split(": ")[0] for p in problems] == [
        "$.hosts[1].before.tests[0].code",
        "$.hosts[3].status",
    ]
    with pytest.raises(ReportInvalid, match=r"\$\.hosts\[1\]\.before\.tests\[0\]\.code"):
        validate_report(doc)
    probe = probe_sample()
    probe["hosts"][0]["port"] = 70000
    with pytest.raises(ReportInvalid, match=r"\$\.hosts\[0\]\.port"):
        validate_probe(probe)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "patternProperties": {"^x": {}}},
        {"type": "string", "format": "email", "contentEncoding": "base64"},
        {"$ref": "#/$defs/nowhere"},
        {"$ref": "other.json"},
        {"enum": [{"a": 1}]},
        {"type": "decimal"},
    ],
)
def test_a_keyword_the_compiler_does_not_know_leaves_it_to_jsonschema(schema):
    schema = {"$id": "https://example.invalid/s.json", **schema}
    with pytest.raises(Unsupported):
        compile_schema({schema["$id"]: schema}, schema["$id"])


def test_recursive_references_and_json_equality_corners():
    uri = "https://example.invalid/tree.json"
    schema = {
        "$id": uri,
        "$defs": {
            "node": {"type": "object", "properties": {"kids": {"items": {"$ref": "#/$defs/node"}}}}
        },
        "$ref": "#/$defs/node",
        "required": ["kids"],
    }
    check = compile_schema({uri: schema}, uri)
    assert check({"kids": [{"kids": [{}]}]})
    assert not check({"kids": [{"kids": [1]}]})
    assert not check({})
    flags = compile_schema({uri: {"$id": uri, "enum": [1, "a", None]}}, uri)
    assert flags(1) and flags("a") and flags(None)
    assert not flags(True)  # JSON true is not 1 (jsonschema agrees)
    integer = compile_schema({uri: {"$id": uri, "type": "integer", "minimum": 0}}, uri)
    assert integer(3) and integer(3.0) and not integer(True) and not integer(-1)
