"""Secrets never reach a report: redact them on the way in, refuse a document that has any.

Three kinds of secret can hide in what the playbook and the probe hand over:
- values under keys that name a secret (``password``, ``vault_password``, ``api_key``,
  ``private_key``, ``token``, ``ansible_become_pass``, ...), anywhere in the document;
- secret material inside any string (PEM private keys, Ansible Vault blobs, passwords in URLs);
- SMTP AUTH credentials in probe transcripts (``AUTH PLAIN <b64>``, and the client's
  base64 answers to ``334`` challenges during ``AUTH LOGIN``/``CRAM-MD5``).
`scrub` is pure and idempotent; `find_secrets` lists what `scrub` would change, so a
document is secret-free exactly when scrubbing leaves it unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from itertools import pairwise
from typing import Any

REDACTED = "[redacted]"

# Words that name a secret when they appear as a word of a key (split on _ - . and camelCase).
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "credential",
        "credentials",
        "cookie",
        "authorization",
        "apikey",
        "privatekey",
    }
)
# Two-word names of key material ("key" alone is too common: registry keys, sort keys).
_SECRET_PAIRS = frozenset(
    {
        ("private", "key"),
        ("api", "key"),
        ("access", "key"),
        ("secret", "key"),
        ("ssh", "key"),
        ("client", "key"),
        ("signing", "key"),
        ("key", "material"),
        ("key", "data"),
        ("session", "key"),
    }
)

_PEM_PRIVATE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|\Z)", re.DOTALL
)
_VAULT_BLOB = re.compile(r"\$ANSIBLE_VAULT;[0-9.]+;[A-Z0-9]+(;[^\s;]+)?\s*[0-9a-fA-F\s]*")
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?=@)")
# Each pattern above starts with a literal that must be in a string it can match: a string
# with none of them is returned as is, without running the three substitutions (most strings
# of a report: banners, replies, test ids; ~150,000 of them in a 100-host report).
_MARKERS = ("-----BEGIN ", "$ANSIBLE_VAULT;", "://")
_AUTH_COMMAND = re.compile(r"^(?P<verb>AUTH\s+\S+)(?P<rest>\s+\S.*)?$", re.IGNORECASE)


def _key_words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w for w in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if w]


@lru_cache(maxsize=4096)  # a report has a few hundred distinct keys, seen ~250,000 times
def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret (`ansible_password`, `vaultToken`, ...)."""
    words = _key_words(key)
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in pairwise(words))


def scrub_text(text: str) -> str:
    """`text` with embedded key material, vault blobs and URL passwords redacted."""
    if not any(marker in text for marker in _MARKERS):
        return text
    text = _PEM_PRIVATE.sub(REDACTED, text)
    text = _VAULT_BLOB.sub(REDACTED, text)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


def scrub_transcript(lines: list[Any]) -> list[Any]:
    """An SMTP transcript with AUTH credentials redacted, direction and order kept."""
    out: list[Any] = []
    in_auth = False
    last_server = ""
    for entry in lines:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
            out.append(scrub(entry))
            continue
        side, line = entry
        if side not in ("C", "S"):  # a note by the probe ("*"): no part of the dialogue
            out.append([side, scrub_text(line)])
            continue
        if side == "S":
            last_server = line
            in_auth = in_auth and line.startswith("334")
            out.append([side, scrub_text(line)])
            continue
        auth = _AUTH_COMMAND.match(line)
        if auth:
            in_auth = True
            line = auth.group("verb") + (f" {REDACTED}" if auth.group("rest") else "")
        elif in_auth and last_server.startswith("334"):
            line = REDACTED  # the client's answer to an AUTH challenge
        else:
            in_auth = False
        out.append([side, scrub_text(line)])
    return out


def scrub(value: Any) -> Any:
    """A deep copy of `value` (JSON data) with every secret redacted."""
    if isinstance(value, dict):
        clean: dict[str, Any] = {}
        for key, item in value.items():
            if is_secret_key(str(key)) and item not in (None, "", REDACTED):
                clean[key] = REDACTED
            elif key == "transcript" and isinstance(item, list):
                clean[key] = scrub_transcript(item)
            else:
                clean[key] = scrub(item)
        return clean
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def _diff_paths(original: Any, cleaned: Any, path: str) -> Iterator[str]:
    if isinstance(original, dict) and isinstance(cleaned, dict):
        for key in original:
            yield from _diff_paths(original[key], cleaned.get(key), f"{path}.{key}")
    elif isinstance(original, list) and isinstance(cleaned, list):
        for index, (a, b) in enumerate(zip(original, cleaned, strict=True)):
            yield from _diff_paths(a, b, f"{path}[{index}]")
    elif original != cleaned:
        yield path


def _secret_paths(value: Any, path: str) -> Iterator[str]:
    """The paths where `scrub` would change `value`, found without copying it: the same
    decisions as `scrub`, and the same order as `_diff_paths` over a scrubbed copy."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if is_secret_key(str(key)) and item not in (None, "", REDACTED):
                yield where
            elif key == "transcript" and isinstance(item, list):
                yield from _diff_paths(item, scrub_transcript(item), where)
            else:
                yield from _secret_paths(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_paths(item, f"{path}[{index}]")
    elif isinstance(value, str) and scrub_text(value) != value:
        yield path


def find_secrets(value: Any) -> list[str]:
    """JSON paths (``$.run.probe_options.password``) of secrets `scrub` would redact."""
    return list(_secret_paths(value, "$"))
