"""Hypothesis strategies for JSON text that ``json.loads`` reads but the server must refuse
(app/core/json_input.py), mixed with ordinary JSON: non-finite numbers (NaN, Infinity, 1e400, 400-digit
integers), NUL and unpaired surrogates in values and names, and deep nesting."""

from __future__ import annotations

import json

from hypothesis import strategies as st

# Every code point, surrogates included (Hypothesis leaves category Cs out by default).
ANY_CHARACTER = st.characters(exclude_categories=())
HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, "-" + "9" * 320]
HOSTILE_STRINGS = ['"\\u0000"', '"a\\u0000"', '"\\ud800"', '"\\udfff"', '"\\udc00\\ud800"', '"x\\uDBFF"']
ORDINARY = ["0", "-0.0", "1.5e308", "true", "false", "null", '"\\ud83d\\ude00"', '"\\\\u0000"', '"\\\\ud800"']

strings = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(ANY_CHARACTER, max_size=12).map(json.dumps),  # escapes NUL and lone surrogates as \uXXXX
    st.text(max_size=12).map(lambda text: json.dumps(text, ensure_ascii=False)),
)
scalars = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS + ORDINARY),
    strings,
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(strings, children), max_size=4).map(
            lambda members: "{" + ",".join(f"{name}:{value}" for name, value in members) + "}"
        ),
    ),
    max_leaves=12,
)


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


hostile_json = st.one_of(
    values,
    st.tuples(st.integers(1, 3000), values).map(lambda pair: nested(*pair)),
    st.tuples(st.integers(1, 60), values).map(lambda pair: '{"a":' * pair[0] + pair[1] + "}" * pair[0]),
)


def object_with(member: str) -> st.SearchStrategy[str]:
    """A JSON object text holding ``member`` with a hostile value (and possibly hostile others)."""
    return st.tuples(hostile_json, st.lists(st.tuples(strings, hostile_json), max_size=2)).map(
        lambda parts: "{" + ",".join([f'"{member}":{parts[0]}', *(f"{name}:{value}" for name, value in parts[1])]) + "}"
    )
