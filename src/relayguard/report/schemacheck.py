"""Schema check room: a JSON Schema compiled into one Python predicate, the fast yes/no.

jsonschema walks a 100-host report (~160,000 values) in about a second, building a validator
object per value; the report step of a run paid that twice. `compile_schema` turns a schema
into nested closures, decided once, that answer "valid?" in a tenth of that time. It knows
only the keywords our schemas use (below) and refuses any other (`Unsupported`): the caller
then keeps jsonschema for everything. The predicate may be stricter than the specification
(1.0 is not taken for the integer 1, nor 1 for the enum value 1.0), never looser; a document
it refuses goes to jsonschema, which names each problem (`relayguard.report.schema`), so a
corner it is strict on costs time, never a wrong answer. tests/report/test_schemacheck.py
compares it with jsonschema on every value of the sample reports, mutated.

Semantics follow JSON Schema 2020-12 (draft-bhutton-json-schema-01 §8.2.3.1, §10.2–10.3 and
draft-bhutton-json-schema-validation-01 §6–7; docs/sources.md#json-schema-2020-12):
an assertion about one type (``minLength``, ``properties``, ``items``...) holds for a value of
another type; ``$ref`` applies beside its siblings; ``format`` is an annotation (our
validators assert no format).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urljoin

Check = Callable[[Any], bool]

# Keywords that assert nothing (with no format checker, `format` is one of them).
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"}
    | {"deprecated", "readOnly", "writeOnly", "format"}
)
SUPPORTED = frozenset(
    {"type", "enum", "const", "$ref", "anyOf", "allOf"}
    | {"required", "properties", "additionalProperties", "propertyNames"}
    | {"items", "prefixItems", "minItems", "maxItems"}
    | {"minLength", "maxLength", "pattern", "minimum", "maximum"}
)
_SCALARS = (str, int, float, bool, type(None))


class Unsupported(ValueError):
    """The schema uses something `compile_schema` does not check; use jsonschema."""


def _true(_value: Any) -> bool:
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: dict[str, Check] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": _is_integer,
}


def _type_check(spec: Any) -> Check:
    names = [spec] if isinstance(spec, str) else spec
    if not isinstance(names, list) or any(n not in _TYPES for n in names):
        raise Unsupported(f"type {spec!r}")
    checks = [_TYPES[n] for n in names]
    if len(checks) == 1:
        return checks[0]
    return lambda v: any(c(v) for c in checks)


def _enum_check(values: Any) -> Check:
    """Equal to one of `values`, of the same Python type (stricter than JSON's equality for
    1 and 1.0; scalars only)."""
    if not isinstance(values, list) or not all(isinstance(v, _SCALARS) for v in values):
        raise Unsupported(f"enum {values!r}")
    allowed = frozenset((type(v), v) for v in values)

    def check(value: Any) -> bool:
        return isinstance(value, _SCALARS) and (type(value), value) in allowed

    return check


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _true
    if len(checks) == 1:
        return checks[0]

    def check(value: Any) -> bool:
        return all(c(value) for c in checks)

    return check


def _any(checks: list[Check]) -> Check:
    def check(value: Any) -> bool:
        return any(c(value) for c in checks)

    return check


class _Compiler:
    """Compiles schemas of a set of resources (by absolute URI), `$ref`s resolved among them."""

    def __init__(self, resources: Mapping[str, Mapping[str, Any]]) -> None:
        self._resources = resources
        self._refs: dict[tuple[str, str], Check] = {}

    def ref(self, base: str, reference: str) -> Check:
        uri, _, fragment = urljoin(base, reference).partition("#")
        key = (uri, fragment)
        if key in self._refs:
            return self._refs[key]
        if uri not in self._resources or (fragment and not fragment.startswith("/")):
            raise Unsupported(f"$ref {reference!r} from {base}")
        compiled: list[Check] = []
        self._refs[key] = lambda v: compiled[0](v)  # a recursive $ref sees this until done
        target: Any = self._resources[uri]
        for part in fragment.split("/")[1:]:
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise Unsupported(f"$ref {reference!r}: nothing at {part!r}")
            target = target[part]
        compiled.append(self.compile(target, uri))
        self._refs[key] = compiled[0]
        return compiled[0]

    def compile(self, schema: Any, base: str) -> Check:
        if schema is True:
            return _true
        if schema is False:
            return lambda _v: False
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        unknown = set(schema) - SUPPORTED - ANNOTATIONS
        if unknown or ("$id" in schema and urljoin(base, schema["$id"]) != base):
            raise Unsupported(f"keywords {sorted(unknown) or ['$id']}")
        checks: list[Check] = []
        if "type" in schema:
            checks.append(_type_check(schema["type"]))
        if "enum" in schema:
            checks.append(_enum_check(schema["enum"]))
        if "const" in schema:
            checks.append(_enum_check([schema["const"]]))
        if "$ref" in schema:
            checks.append(self.ref(base, schema["$ref"]))
        if "anyOf" in schema:
            checks.append(_any([self.compile(s, base) for s in schema["anyOf"]]))
        if "allOf" in schema:
            checks.append(_all([self.compile(s, base) for s in schema["allOf"]]))
        checks += self._object(schema, base) + self._array(schema, base) + _scalar(schema)
        return _all(checks)

    def _object(self, schema: Mapping[str, Any], base: str) -> list[Check]:
        words = ("required", "properties", "additionalProperties", "propertyNames")
        if not any(w in schema for w in words):
            return []
        required = list(schema.get("required", []))
        properties = {k: self.compile(s, base) for k, s in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties", True)
        additional = None if extra is True else self.compile(extra, base)
        names = self.compile(schema["propertyNames"], base) if "propertyNames" in schema else None

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for key in required:
                if key not in value:
                    return False
            for key, item in value.items():
                if names is not None and not names(key):
                    return False
                item_check = properties.get(key, additional)
                if item_check is not None and not item_check(item):
                    return False
            return True

        return [check]

    def _array(self, schema: Mapping[str, Any], base: str) -> list[Check]:
        if not any(w in schema for w in ("items", "prefixItems", "minItems", "maxItems")):
            return []
        prefix = [self.compile(s, base) for s in schema.get("prefixItems", [])]
        items = self.compile(schema["items"], base) if "items" in schema else None
        least, most = schema.get("minItems", 0), schema.get("maxItems")

        def check(value: Any) -> bool:
            if not isinstance(value, list):
                return True
            if len(value) < least or (most is not None and len(value) > most):
                return False
            if not all(c(v) for c, v in zip(prefix, value, strict=False)):
                return False
            return items is None or all(items(v) for v in value[len(prefix) :])

        return [check]


def _scalar(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "minLength" in schema or "maxLength" in schema:
        shortest, longest = schema.get("minLength", 0), schema.get("maxLength")
        checks.append(
            lambda v: (
                not isinstance(v, str)
                or (len(v) >= shortest and (longest is None or len(v) <= longest))
            )
        )
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search
        checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
    if "minimum" in schema:
        low = schema["minimum"]
        checks.append(lambda v: not _is_number(v) or v >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        checks.append(lambda v: not _is_number(v) or v <= high)
    return checks


def compile_schema(resources: Mapping[str, Mapping[str, Any]], uri: str) -> Check:
    """The predicate "valid against the schema at `uri`" (`resources`: every schema its
    `$ref`s may reach, by `$id`); raises `Unsupported` for a keyword it does not check."""
    return _Compiler(resources).ref(uri, "")
