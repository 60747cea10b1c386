"""Strict parsing of ``application/x-www-form-urlencoded`` request parameters.

Both front doors parse the client's parameters here: the RFC 9126 endpoint from its body, the
backend API from its ``parameters`` field.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus

from app.core.errors import InvalidRequest, RequestTooLarge

# RFC 8707 §2: "the "resource" parameter ... MAY be used multiple times".
MULTI_VALUED_PARAMETERS = frozenset({"resource"})
_BAD_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Control characters other than TAB, LF and CR (which JSON-valued parameters may carry).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_REPORTED_NAME_LENGTH = 40
MAX_REMEMBERED_COMPONENT_LENGTH = 1024  # a redirect URI, say
# What quote_plus leaves as it is: most names and values (codes, scopes without spaces, PKCE challenges).
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
# A body quote_plus could have written: name=value fields joined by single "&", each name and value made of
# what quote_plus leaves as it is, "+" (its space) and upper-case escapes of the bytes it does escape (not
# of the unreserved characters or the space). Decoding such a body and encoding it again gives it back.
_FORM_CHARACTERS = "[A-Za-z0-9_.~+-]*"
_QUOTED_BYTE = "%(?:[01][0-9A-F]|2[1-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F])"
_ENCODED_COMPONENT = f"{_FORM_CHARACTERS}(?:{_QUOTED_BYTE}{_FORM_CHARACTERS})*"
_ENCODED_FORM = re.compile(f"{_ENCODED_COMPONENT}={_ENCODED_COMPONENT}(?:&{_ENCODED_COMPONENT}={_ENCODED_COMPONENT})*")


# RFC 6749 §2.3.1: client credentials "can only be transmitted in the request-body and MUST NOT be included
# in the request URI"; the same holds for the other secrets a token or PAR request can carry (assertions,
# codes, verifiers, tokens, passwords), which a URL leaks to logs, proxies and browser history.
CREDENTIAL_PARAMETERS = frozenset(
    {
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "code",
        "code_verifier",
        "refresh_token",
        "password",
        "assertion",
        "access_token",
        "subject_token",
        "actor_token",
        "device_code",
    }
)


@dataclass(frozen=True, slots=True)
class ParameterBounds:
    """How many parameters a request may carry and how large they may be (PAR_MAX_PARAMETERS,
    PAR_MAX_PARAMETER_BYTES, PAR_MAX_BODY_BYTES)."""

    max_parameters: int
    max_parameter_bytes: int
    max_total_bytes: int


@dataclass(frozen=True, slots=True)
class RequestParameters:
    """Parameters in their original order. Values are decoded; empty values are kept as sent."""

    pairs: tuple[tuple[str, str], ...]
    # The body these pairs were parsed from: their encoding too when it has urlencode's form (``encode``).
    body: str | None = dataclasses.field(default=None, repr=False, compare=False)
    # A push looks parameters up dozens of times: the first value of each name.
    _first: dict[str, str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_first", dict(reversed(self.pairs)))

    def get(self, name: str) -> str | None:
        """RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted"."""
        return self._first.get(name) or None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name and value]

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` has a value (``get``'s rule), if only a later one of a multi-valued name."""
        first = self._first.get(name) if isinstance(name, str) else None
        return bool(first) or (first is not None and any(key == name and value for key, value in self.pairs))

    def without(self, names: frozenset[str]) -> RequestParameters:
        if names.isdisjoint(self._first):
            return self
        return RequestParameters(tuple((key, value) for key, value in self.pairs if key not in names))

    def with_value(self, name: str, value: str) -> RequestParameters:
        """These parameters with ``name`` set to ``value`` (replacing any value it had)."""
        return RequestParameters((*((k, v) for k, v in self.pairs if k != name), (name, value)))

    def encode(self) -> str:
        """``urlencode(self.pairs)``: the body they were parsed from when that is already in its form."""
        if self.body is not None and _ENCODED_FORM.fullmatch(self.body):
            return self.body
        return "&".join(f"{_form_encode(key)}={_form_encode(value)}" for key, value in self.pairs)


def parse_parameters(raw: str | bytes, limits: ParameterBounds) -> RequestParameters:
    """Parse a form-encoded string, refusing anything a strict reading of the RFCs refuses.

    RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once."
    RFC 9126 §2.1: the body is encoded "using the application/x-www-form-urlencoded format ... with a
    character encoding of UTF-8".
    """
    if len(raw) > limits.max_total_bytes:
        raise RequestTooLarge(f"the request parameters exceed {limits.max_total_bytes} bytes")
    try:
        # bytes must decode; a str must encode (no lone surrogates, which JSON's "\ud800" can carry)
        raw = raw.decode("utf-8") if isinstance(raw, bytes) else raw.encode("utf-8").decode("utf-8")
    except UnicodeError:
        raise InvalidRequest("the request body is not valid UTF-8") from None
    if not raw:
        return RequestParameters(())
    fields = raw.split("&")
    if len(fields) > limits.max_parameters:
        raise RequestTooLarge(f"the request has more than {limits.max_parameters} parameters")
    clean = not _CONTROL_CHARACTERS.search(raw)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for field in fields:
        if not field:
            continue  # tolerate "a=1&&b=2" and a trailing "&", as browsers and form encoders emit them
        if len(field) > limits.max_parameter_bytes:
            raise RequestTooLarge(f"a parameter exceeds {limits.max_parameter_bytes} bytes")
        name, separator, value = field.partition("=")
        if not separator:
            raise InvalidRequest("every parameter must have the form name=value")
        name, value = _decode(name, clean=clean), _decode(value, clean=clean)
        if not name:
            raise InvalidRequest("a parameter has an empty name")
        if name in seen and name not in MULTI_VALUED_PARAMETERS:
            raise InvalidRequest(f"the '{_reportable(name)}' parameter is included more than once")
        seen.add(name)
        pairs.append((name, value))
    return RequestParameters(tuple(pairs), body=raw)


def refuse_credentials_in_query(query: str) -> None:
    """RFC 6749 §2.3.1: "The parameters can only be transmitted in the request-body and MUST NOT be
    included in the request URI." RFC 9126 §2.1 sends every parameter in the body, so a credential in the
    query is refused rather than ignored (GEN-09); names only are read, and never a value reported."""
    if not query:
        return  # as most requests come
    for field in query.split("&"):
        name = unquote_plus(field.partition("=")[0], encoding="utf-8", errors="replace")
        if name in CREDENTIAL_PARAMETERS:
            raise InvalidRequest(f"the '{name}' parameter must not be in the request URI (RFC 6749 section 2.3.1)")


def _decode(component: str, *, clean: bool) -> str:
    """``clean``: the body has no control characters, so only a percent-escape can bring one in."""
    if "%" in component:
        if len(component) <= MAX_REMEMBERED_COMPONENT_LENGTH:
            return _remembered_percent_decode(component)
        return _percent_decode(component)
    decoded = component.replace("+", " ")  # all that unquote_plus does without escapes, as to most components
    if not clean:
        _refuse_control_characters(decoded)
    return decoded


def _percent_decode(component: str) -> str:
    if _BAD_PERCENT_ESCAPE.search(component):
        raise InvalidRequest("the request contains a malformed percent-encoding")
    try:
        decoded = unquote_plus(component, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("a parameter is not valid percent-encoded UTF-8") from None
    _refuse_control_characters(decoded)
    return decoded


# A client sends the same percent-encoded redirect_uri with every push, and decoding it costs more than the
# rest of the parsing. Bounded: a few megabytes at most, however many distinct values arrive.
_remembered_percent_decode = functools.lru_cache(maxsize=1024)(_percent_decode)


def _refuse_control_characters(decoded: str) -> None:
    if _CONTROL_CHARACTERS.search(decoded):
        raise InvalidRequest("a parameter contains control characters")


def _form_encode(text: str) -> str:
    """``urlencode``'s encoding of one name or value; the common case of nothing to escape is checked first."""
    return text if _UNRESERVED.fullmatch(text) else quote_plus(text)


def _reportable(name: str) -> str:
    return name if len(name) <= MAX_REPORTED_NAME_LENGTH else name[:MAX_REPORTED_NAME_LENGTH] + "..."
