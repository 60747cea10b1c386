"""Authorization error redirects (RFC 6749 §4.1.2.1, RFC 9207)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from app.core.authorization import error_redirect_url
from app.core.errors import InvalidScope
from app.core.params import ParameterBounds, parse_parameters

LIMITS = ParameterBounds(max_parameters=50, max_parameter_bytes=1000, max_total_bytes=10_000)
ISSUER = "https://as.example.com"


def redirect(redirect_uri: str, body: str) -> str:
    return error_redirect_url(
        redirect_uri, InvalidScope("scope 'x' is not supported"), parse_parameters(body, LIMITS), issuer=ISSUER
    )


def test_query_carries_error_state_and_iss() -> None:
    url = urlsplit(redirect("https://c.example/cb", "response_type=code&state=s%26t"))
    assert (url.scheme, url.netloc, url.path, url.fragment) == ("https", "c.example", "/cb", "")
    assert parse_qs(url.query) == {
        "error": ["invalid_scope"],
        "error_description": ["scope 'x' is not supported"],
        "state": ["s&t"],
        "iss": [ISSUER],
    }


def test_existing_query_is_kept_and_state_omitted_when_absent() -> None:
    query = parse_qs(urlsplit(redirect("https://c.example/cb?tenant=7", "response_type=code")).query)
    assert query["tenant"] == ["7"] and "state" not in query


def test_fragment_for_token_response_types_and_fragment_mode() -> None:
    for body in ("response_type=code+id_token", "response_type=token", "response_type=code&response_mode=fragment"):
        url = urlsplit(redirect("https://c.example/cb", body))
        assert url.query == "" and parse_qs(url.fragment)["error"] == ["invalid_scope"]


def test_custom_scheme_redirects_for_native_apps() -> None:
    """RFC 8252 §7.1: private-use URI schemes."""
    url = urlsplit(redirect("com.example.app:/oauth2redirect", "response_type=code"))
    assert url.scheme == "com.example.app" and parse_qs(url.query)["iss"] == [ISSUER]
