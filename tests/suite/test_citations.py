"""Every source a file cites can be opened from the repository (issue "The house").

Three rules over the tracked files (`git ls-files`):
- nothing cites the notes outside the repository (the reference file, the contracts file,
  the shared notes directory, absolute paths under the work root): cite docs/sources.md or
  the primary source;
- every `docs/sources.md#<anchor>` (or `sources.md#<anchor>` inside docs/) names a heading of
  docs/sources.md, with anchors computed as GitHub computes them;
- every `docs/<file>.md` mentioned exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "docs" / "sources.md"
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Built from parts so this file does not match itself.
FORBIDDEN = re.compile(
    "|".join(
        [
            re.escape("REFERENCE" + ".md"),
            re.escape("notes/" + "contracts" + ".md"),
            re.escape("contracts" + ".md"),
            re.escape("../sha" + "red/"),
            re.escape("/" + "work/"),
        ]
    )
)
ANCHOR_REF = re.compile(r"(?:docs/|\(|\b)sources\.md#([A-Za-z0-9_\-]+)")
DOC_PATH = re.compile(r"\bdocs/([A-Za-z0-9_\-]+)\.md\b")

# Cited before it was written; remove the entry when the file exists (a test says when).
KNOWN_MISSING_DOCS: dict[str, str] = {}


def github_anchor(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match and not in_fence:
            found.add(github_anchor(match.group(1)))
    return found


def tracked_texts() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    texts: dict[str, str] = {}
    for raw in names:
        name = raw.decode()
        path = ROOT / name
        if not name or name == THIS or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        texts[name] = data.decode("utf-8", errors="replace")
    # docs/sources.md may not be tracked yet while it is being written
    texts.setdefault("docs/sources.md", SOURCES.read_text())
    return texts


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return tracked_texts()


def test_github_anchor_rule() -> None:
    assert github_anchor("rfc5321-4-5-2") == "rfc5321-4-5-2"
    assert github_anchor("RFC 2505 §2.1 (case)") == "rfc-2505-21-case"


def test_no_citation_outside_the_repository(texts: dict[str, str]) -> None:
    hits = [
        f"{name}:{number}: {line.strip()}"
        for name, text in texts.items()
        for number, line in enumerate(text.splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert hits == [], "cite docs/sources.md or the primary source instead:\n" + "\n".join(hits)


def test_every_cited_anchor_exists(texts: dict[str, str]) -> None:
    known = anchors(SOURCES.read_text())
    missing = [
        f"{name}:{number}: #{anchor}"
        for name, text in texts.items()
        for number, line in enumerate(text.splitlines(), 1)
        for anchor in ANCHOR_REF.findall(line)
        if anchor not in known
    ]
    assert missing == [], "no such heading in docs/sources.md:\n" + "\n".join(missing)


def test_every_cited_doc_exists(texts: dict[str, str]) -> None:
    missing = sorted(
        {
            f"docs/{stem}.md (cited in {name})"
            for name, text in texts.items()
            for stem in DOC_PATH.findall(text)
            if stem not in KNOWN_MISSING_DOCS and not (ROOT / "docs" / f"{stem}.md").is_file()
        }
    )
    assert missing == [], "\n".join(missing)


def test_known_missing_docs_are_still_missing() -> None:
    written = [stem for stem in KNOWN_MISSING_DOCS if (ROOT / "docs" / f"{stem}.md").is_file()]
    assert written == [], f"docs/{written} exist now: drop them from KNOWN_MISSING_DOCS"
