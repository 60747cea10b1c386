"""The documents tell the truth about the code: every requirement id the code cites is in
docs/requirements.md, and nothing points at files outside the repository or at tracker numbers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "docs" / "requirements.md"
# Where the ids are cited: the code, the tests and what documents or exercises them.
CITING = ("app", "tests", "examples", "migrations", "bench", "scripts", "README.md")

# An id, then optionally more of the same prefix: a range ("DPOP-01..11"), a list with the prefix
# left out (", -04"), or alternatives ("/03").
CITATION = re.compile(r"\b([A-Z]+)-([0-9]{2})\b((?:\.\.[0-9]{2}|, -[0-9]{2}|/[0-9]{2})*)")
CONTINUATION = re.compile(r"(\.\.|, -|/)([0-9]{2})")
# Same shape, not requirement ids: ML-DSA-44 (a JOSE key type), and names the code may well use.
NOT_IDS = frozenset({"DSA-44", "EUI-64", "URL-64", "UTF-16", "EF-00"})

# What a reader outside this workplace cannot open, and tracker numbers of our own.
OUTSIDE_REFERENCES = re.compile(
    r"\.\./shared|shared/reference|spec-requirements|authlete-api\.md|python-stack\.md|style-anchors"
    r"|style convention"
)
OWN_ISSUE_NUMBER = re.compile(r"(?i)\bissue\s*#?[0-9]+|(?<![\w/&;=])#[0-9]+\b")


def tracked_files(*paths: str) -> list[Path]:
    """The repository's text files under ``paths`` (what git tracks, plus new files not yet added)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = [ROOT / name for name in listed if "node_modules" not in name and not name.endswith("-lock.json")]
    return [path for path in files if path.is_file() and b"\0" not in path.read_bytes()[:1024]]


def cited_ids(text: str) -> set[str]:
    ids = set()
    for match in CITATION.finditer(text):
        prefix, first, rest = match.groups()
        ids.add(f"{prefix}-{first}")
        previous = int(first)
        for separator, number in CONTINUATION.findall(rest):
            numbers = range(previous + 1, int(number) + 1) if separator == ".." else [int(number)]
            ids.update(f"{prefix}-{n:02d}" for n in numbers)
            previous = int(number)
    return ids - NOT_IDS


def documented_ids() -> set[str]:
    """The ids in the first column of the document's tables."""
    return set(re.findall(r"^\| ([A-Z]+-[0-9]{2}) \|", REQUIREMENTS.read_text(), re.MULTILINE))


def test_the_citation_pattern_reads_ranges_and_lists() -> None:
    assert cited_ids("DPOP-01..03, FAPI-02, -04, -07, MTLS-02/03 and ML-DSA-44, SHA-256") == {
        "DPOP-01",
        "DPOP-02",
        "DPOP-03",
        "FAPI-02",
        "FAPI-04",
        "FAPI-07",
        "MTLS-02",
        "MTLS-03",
    }


def test_every_cited_requirement_id_is_documented() -> None:
    documented = documented_ids()
    missing = {
        f"{identifier} ({path.relative_to(ROOT)})"
        for path in tracked_files(*CITING)
        for identifier in cited_ids(path.read_text(errors="replace"))
        if identifier not in documented
    }
    assert not missing, f"cited but not in docs/requirements.md: {sorted(missing)}"


def test_the_document_cites_only_ids_it_defines() -> None:
    text = REQUIREMENTS.read_text()
    assert cited_ids(text) <= documented_ids()


@pytest.mark.parametrize("pattern", [OUTSIDE_REFERENCES, OWN_ISSUE_NUMBER], ids=["outside-files", "issue-numbers"])
def test_no_references_to_files_outside_the_repository_or_to_issue_numbers(pattern: re.Pattern[str]) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in tracked_files(*CITING, "docs", "Dockerfile", "docker", "pyproject.toml", ".ci")
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)


def test_every_setting_has_a_row_in_the_readme() -> None:
    """Each setting an operator can set is in one of README's tables of variables, by its variable name."""
    from app.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    documented: set[str] = set()
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    # Set by `par-server demo` for the server it starts, not by an operator.
    internal = {f"{prefix}DEMO"}
    variables = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    assert sorted(variables - internal - documented) == []
