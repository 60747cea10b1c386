"""The one reader of JSON that comes from outside: request parameters and bodies, JWT headers and claims,
client key sets (registered or fetched), and what the stores give back.

``json.loads`` accepts more than JSON, and more than the rest of the server (and PostgreSQL) can hold:

- RFC 8259 §6: "Numeric values that cannot be represented in the grammar below (such as Infinity and
  NaN) are not permitted." ``json.loads`` reads ``NaN``, ``Infinity`` and ``-Infinity``, and a literal
  such as ``1e400`` becomes infinity. RFC 7493 (I-JSON) §2.2: "I-JSON messages SHOULD NOT include numbers
  that express greater magnitude or precision than an IEEE 754 double precision number provides", so an
  integer beyond that range is refused too.
- RFC 8259 §8.2: strings "containing ... unpaired surrogates" make "the behavior of software that
  receives JSON texts containing such values ... unpredictable"; RFC 7493 §2.1: "MUST NOT include code
  points that identify Surrogates". They cannot be encoded as UTF-8 at all.
- U+0000 (NUL), in a value or a name: PostgreSQL's text and json cannot hold it.
- Nesting: ``json.loads`` recurses once per level and fails with ``RecursionError`` about 1,000 deep.
  Nothing we read needs more than a few levels (a JWKS is four deep, RFC 9396 authorization details a
  handful), so the limit is ``PAR_MAX_JSON_DEPTH``.

Each refusal is a :class:`JsonInputError` (a ``ValueError``) whose message is safe to show; the caller
turns it into its own error code. The common case pays two ``str.count``, a substring test and
``str.isascii`` beyond ``json.loads``, a tenth of the parse (bench/RESULTS.md, "Figures behind the code's
choices"): the exact checks run only when those find something suspect.
"""

from __future__ import annotations

import json
import math
import re
import sys
from itertools import accumulate
from typing import Any

DEFAULT_MAX_DEPTH = 32
# An int literal shorter than this cannot exceed the largest double (about 1.8e308, 309 digits).
_MAX_SAFE_INT_DIGITS = 308
_MAX_FLOAT = sys.float_info.max
# NUL or a surrogate, escaped (\u0000, \uD800-\uDFFF) or raw: then each string is checked exactly.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
# A string, or an unclosed one to the end of the text: each character is read once (with the closing
# quote required, every quote of an unclosed run of ``\"`` started a scan to the end: quadratic).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_BRACKET_DEPTH = {"[": 1, "{": 1, "]": -1, "}": -1}

_max_depth = DEFAULT_MAX_DEPTH


class JsonInputError(ValueError):
    """Input that is not JSON the server accepts; the message is safe to show (it holds no input)."""


def set_max_depth(depth: int) -> None:
    """``PAR_MAX_JSON_DEPTH``, set once at startup (``app.state.build_state``)."""
    global _max_depth  # noqa: PLW0603 - one process-wide limit, like the recursion limit it guards
    if depth < 1:
        raise ValueError("the JSON depth limit must be at least 1")
    _max_depth = depth


def loads(text: str | bytes) -> Any:
    """Parse ``text`` (bytes must be UTF-8, RFC 8259 §8.1) or raise :class:`JsonInputError`."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonInputError("the JSON text is not UTF-8") from None
    limit = _max_depth
    if text.count("[") + text.count("{") > limit:  # cheap bound; brackets inside strings counted too
        _check_text_depth(text, limit)
    try:
        value = _DECODER.decode(text)
    except JsonInputError:
        raise
    except (ValueError, RecursionError):  # JSONDecodeError, and too many digits for an int
        raise JsonInputError("the text is not valid JSON") from None
    # Substring and isascii tests first: a search for a character range costs as much as the parse.
    if ("\\u" in text and _SUSPECT_ESCAPE.search(text)) or (not text.isascii() and _RAW_SURROGATE.search(text)):
        _check_strings(value)
    return value


def check(value: Any) -> None:
    """The same rules for a value already parsed (read back from a store, or built by a library): no
    non-finite or out-of-range number, no NUL or unpaired surrogate, no deeper nesting than the limit."""
    _check_value(value, _max_depth)


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (not a bool) within the range of a double, else None:
    the one check of JWT time claims (RFC 7519 §2 NumericDate: "A JSON numeric value")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and abs(value) > _MAX_FLOAT:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"the JSON text holds {name}, which is not a JSON number")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise JsonInputError("the JSON text holds a number too large for a double")
    return number


def _bounded_int(literal: str) -> int:
    number = int(literal)
    if len(literal) > _MAX_SAFE_INT_DIGITS and abs(number) > _MAX_FLOAT:
        raise JsonInputError("the JSON text holds a number too large for a double")
    return number


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)


def _check_text_depth(text: str, limit: int) -> None:
    """The exact nesting depth, brackets inside strings left out, before ``json.loads`` recurses (summed in
    C: a wide array of many brackets costs no Python loop)."""
    brackets = _BRACKET.findall(_STRING.sub("", text))
    if max(accumulate(map(_BRACKET_DEPTH.__getitem__, brackets)), default=0) > limit:
        raise JsonInputError(f"the JSON text is nested deeper than {limit} levels")


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        _check_string(value)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_string(key)
            _check_strings(item)


def _check_string(text: str) -> None:
    if _BAD_CHARACTER.search(text):
        raise JsonInputError("the JSON text holds a NUL character or an unpaired surrogate")


def _check_value(value: Any, remaining: int) -> None:
    if isinstance(value, str):
        _check_string(value)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        if finite_number(value) is None:
            raise JsonInputError("the JSON value holds a number that is not finite")
    elif isinstance(value, list | dict):
        if remaining < 1:
            raise JsonInputError(f"the JSON value is nested deeper than {_max_depth} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    _check_string(key)
                _check_value(item, remaining - 1)
        else:
            for item in value:
                _check_value(item, remaining - 1)
