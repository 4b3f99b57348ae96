"""Validation room: the JSON Schemas of probe/1 and report/1, and the checks they cannot express.

The schemas live in ``relayguard/schemas/`` (JSON Schema 2020-12). `validate_report` runs
the schema, then the semantic checks (the summary agrees with the hosts, host names are
unique, no secret is present), and raises `ReportInvalid` naming every problem by its JSON
path, e.g. ``$.hosts[3].status: 'broken' is not one of [...]``. A compiled check
(`relayguard.report.schemacheck`) answers first; only a document it refuses meets jsonschema.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from relayguard.report.compliance import summarize
from relayguard.report.schemacheck import Check, Unsupported, compile_schema
from relayguard.report.scrub import find_secrets

PROBE_SCHEMA_FILE = "probe-1.json"
REPORT_SCHEMA_FILE = "report-1.json"


class ReportInvalid(ValueError):
    """A document does not satisfy its schema; `problems` lists each finding by JSON path."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"invalid {what}: {problems[0]}{more}")


def load_schema(name: str) -> dict[str, Any]:
    """One schema file from the package, parsed."""
    text = resources.files("relayguard").joinpath("schemas", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    """Every schema of the package by its `$id` (the targets of their `$ref`s)."""
    found = (load_schema(n) for n in (PROBE_SCHEMA_FILE, REPORT_SCHEMA_FILE))
    return {str(schema["$id"]): schema for schema in found}


@cache
def _validator(name: str) -> Draft202012Validator:
    resources_ = [Resource.from_contents(schema) for schema in _schemas().values()]
    registry: Registry[Any] = Registry().with_resources(
        (str(r.contents["$id"]), r) for r in resources_
    )
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)


@cache
def _fast_check(name: str) -> Check | None:
    """The compiled yes/no of schema `name` (relayguard.report.schemacheck), None when it
    uses a keyword the compiler does not know (jsonschema alone then)."""
    _validator(name)  # the schema itself is checked against its metaschema first
    try:
        return compile_schema(_schemas(), str(load_schema(name)["$id"]))
    except Unsupported:
        return None


def _json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: ValidationError) -> str:
    # For anyOf/oneOf the deepest sub-error says what is actually wrong.
    if error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _describe(deepest)
    return f"{_json_path(error)}: {error.message}"


def schema_problems(doc: Any, schema_file: str) -> list[str]:
    """Every schema violation of `doc`, by JSON path, in document order.

    A document the compiled check accepts has none; any other goes to jsonschema, which
    names each problem (the compiled check is never looser than jsonschema)."""
    fast = _fast_check(schema_file)
    if fast is not None and fast(doc):
        return []
    errors = sorted(_validator(schema_file).iter_errors(doc), key=lambda e: list(map(str, e.path)))
    return [_describe(e) for e in errors]


def validate_probe(doc: Any) -> None:
    """Raise `ReportInvalid` unless `doc` is a valid relayguard.probe/1 document."""
    problems = schema_problems(doc, PROBE_SCHEMA_FILE)
    if problems:
        raise ReportInvalid("relayguard.probe/1 document", problems)


def report_problems(doc: Any, *, secrets: bool = True) -> list[str]:
    """Schema and semantic problems of a relayguard.report/1 document (empty: valid);
    without `secrets`, secret material is not looked for (a document just scrubbed)."""
    problems = schema_problems(doc, REPORT_SCHEMA_FILE)
    if problems:
        return problems
    names = [h["host"] for h in doc["hosts"]]
    problems += [
        f"$.hosts: host {n!r} appears more than once"
        for n in sorted(set(names))
        if names.count(n) > 1
    ]
    expected = summarize(doc["hosts"])
    for key, value in expected.items():
        if doc["summary"][key] != value:
            problems.append(
                f"$.summary.{key}: {doc['summary'][key]!r} disagrees with the hosts ({value!r})"
            )
    if secrets:
        problems += [f"{p}: secret material in a report (refused)" for p in find_secrets(doc)]
    return problems


def validate_report(doc: Any) -> None:
    """Raise `ReportInvalid` unless `doc` is a valid, secret-free relayguard.report/1 document."""
    problems = report_problems(doc)
    if problems:
        raise ReportInvalid("relayguard.report/1 document", problems)
