"""The catalogue of result codes: well-formed, one name per code but for the documented shared ones,
and the only place in app/ where a code is written out."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from app.core import result_codes

APP = Path(result_codes.__file__).resolve().parent.parent
CATALOGUE = Path(result_codes.__file__).resolve()
RESULT_CODE = re.compile(r"\bA\d{6}\b")
# Codes the server has always sent with two meanings; renumbering either would change the wire.
SHARED = {
    "A001213": {"UNSUPPORTED_MEDIA_TYPE", "CLIENT_NOT_FOUND"},
    "A003201": {"API_TOKEN_INVALID", "API_NOT_FOUND"},
}


def catalogue() -> dict[str, str]:
    return {name: value for name, value in vars(result_codes).items() if name.isupper() and isinstance(value, str)}


def test_every_code_is_an_authlete_result_code() -> None:
    codes = catalogue()
    assert len(codes) > 60
    assert {name: code for name, code in codes.items() if not re.fullmatch(r"A\d{6}", code)} == {}


def test_a_code_has_one_name_but_the_documented_shared_ones() -> None:
    names_by_code: defaultdict[str, set[str]] = defaultdict(set)
    for name, code in catalogue().items():
        names_by_code[code].add(name)
    assert {code: names for code, names in names_by_code.items() if len(names) > 1} == SHARED
    source_lines = CATALOGUE.read_text().splitlines()
    for code, names in SHARED.items():
        for name in names:
            (line,) = (line for line in source_lines if line.startswith(f"{name}:"))
            assert f"shares {code}" in line, f"{name} does not say that it shares {code}"


def test_the_catalogue_imports_nothing_of_the_app() -> None:
    tree = ast.parse(CATALOGUE.read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert [module for module in imported if module and module.split(".")[0] == "app"] == []


def test_no_result_code_is_written_out_in_app_outside_the_catalogue() -> None:
    found = [
        f"{path.relative_to(APP.parent)}:{number}: {line.strip()}"
        for path in sorted(APP.rglob("*.py"))
        if path != CATALOGUE
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if RESULT_CODE.search(line)
    ]
    assert found == []
    assert RESULT_CODE.search(CATALOGUE.read_text())  # the pattern does find codes where they are
