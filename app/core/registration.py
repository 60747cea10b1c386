"""Rules for registering services and clients (what the management API and CLI accept)."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from app.core import jose, json_input, mtls
from app.core.errors import ApiBadRequest
from app.core.model import FAPI2_AUTH_METHODS, ClientAuthMethod, ClientType

MAX_URI_LENGTH = 2000
MAX_ALIAS_LENGTH = 200


# RFC 3986 §2: a URI is a sequence of ASCII characters, each unreserved, reserved or part of a
# pct-encoded octet; anything else (controls, CR/LF, spaces, non-ASCII) must be percent-encoded.
_URI_CHARACTERS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _absolute_uri(name: str, uri: str) -> SplitResult:
    """RFC 3986 §4.3: "absolute-URI = scheme ":" hier-part [ "?" query ]", made of the characters of §2,
    at most ``MAX_URI_LENGTH`` long and without a fragment (every URI registered here refuses one). These
    URIs end up in Location headers and metadata, so the offending value is not echoed."""
    if len(uri) > MAX_URI_LENGTH:
        raise ApiBadRequest(f"{name} must be at most {MAX_URI_LENGTH} characters")
    if not _URI_CHARACTERS.fullmatch(uri):
        raise ApiBadRequest(
            f"{name} must be a URI of ASCII characters (RFC 3986), without spaces or control characters: "
            "percent-encode anything else"
        )
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - parses the port, raising ValueError when it is not a number in range
    except ValueError:
        raise ApiBadRequest(f"{name} must be a URI with a valid authority (RFC 3986)") from None
    if not _SCHEME.fullmatch(parts.scheme):
        raise ApiBadRequest(f"{name} must be an absolute URI, starting with a scheme (RFC 3986)")
    if "#" in uri:
        raise ApiBadRequest(f"{name} must not have a fragment")
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        raise ApiBadRequest(f"{name} has no host")
    return parts


def validate_redirect_uri(uri: str) -> str:
    """RFC 6749 §3.1.2: "The redirection endpoint URI MUST be an absolute URI ... MUST NOT include a
    fragment component." Custom schemes are allowed for native apps (RFC 8252 §7.1)."""
    _absolute_uri("each redirect URI (redirectUris)", uri)
    return uri


def validate_issuer(issuer: str) -> str:
    """RFC 8414 §2: the issuer is "a URL that uses the "https" scheme and has no query or fragment
    components" (http is accepted for local development)."""
    parts = _absolute_uri("issuer", issuer)
    if parts.scheme not in ("https", "http") or parts.query or "?" in issuer:
        raise ApiBadRequest("issuer must be an http(s) URL without query or fragment")
    return issuer.rstrip("/")


def validate_endpoint_url(name: str, url: str) -> str:
    """An endpoint (or ``jwksUri``) this server or its callers will contact: an absolute http(s) URL
    without a fragment (RFC 6749 §3.1: the endpoint URI "MUST NOT include a fragment component")."""
    if _absolute_uri(name, url).scheme not in ("https", "http"):
        raise ApiBadRequest(f"{name} must be an absolute http(s) URL without a fragment")
    return url


def resolve_client_type_and_method(
    client_type: ClientType | None, method: ClientAuthMethod | None
) -> tuple[ClientType, ClientAuthMethod]:
    """Fill in whichever of the two is missing and refuse contradictory pairs.

    RFC 6749 §2.1: public clients are "incapable of maintaining the confidentiality of their
    credentials", so they authenticate with ``none``, and confidential clients never do.
    """
    if client_type is None and method is None:
        client_type, method = ClientType.CONFIDENTIAL, ClientAuthMethod.CLIENT_SECRET_BASIC
    elif method is None:
        method = ClientAuthMethod.NONE if client_type is ClientType.PUBLIC else ClientAuthMethod.CLIENT_SECRET_BASIC
    elif client_type is None:
        client_type = ClientType.PUBLIC if method is ClientAuthMethod.NONE else ClientType.CONFIDENTIAL
    assert client_type is not None
    if (client_type is ClientType.PUBLIC) != (method is ClientAuthMethod.NONE):
        raise ApiBadRequest(
            f"a {client_type.name} client cannot use token auth method {method.name}: public "
            "clients use NONE and confidential clients a real authentication method"
        )
    return client_type, method


def validate_request_sign_alg(alg: str | None) -> None:
    """Request objects are verified with the client's public keys: an asymmetric algorithm, never none."""
    if alg is not None and alg not in jose.ASYMMETRIC_ALGORITHMS:
        raise ApiBadRequest(f"requestSignAlg must be one of {', '.join(jose.ASYMMETRIC_ALGORITHMS)}")


def validate_client_authentication(
    method: ClientAuthMethod,
    *,
    sign_alg: str | None,
    has_jwks: bool,
    has_jwks_uri: bool,
    tls_attributes: dict[str, str | None],
) -> None:
    """Refuse a registration that could never authenticate, instead of failing every push later."""
    if sign_alg is not None:
        allowed = {
            ClientAuthMethod.CLIENT_SECRET_JWT: jose.SYMMETRIC_ALGORITHMS,
            ClientAuthMethod.PRIVATE_KEY_JWT: jose.ASYMMETRIC_ALGORITHMS,
        }.get(method, ())
        if sign_alg not in allowed:
            raise ApiBadRequest(f"tokenAuthSignAlg {sign_alg[:20]} does not suit token auth method {method.name}")
    if has_jwks and has_jwks_uri:
        # RFC 7591 §2: "The "jwks_uri" and "jwks" parameters MUST NOT both be present in the same request."
        raise ApiBadRequest("jwks and jwksUri must not both be set")
    if method in (ClientAuthMethod.PRIVATE_KEY_JWT, ClientAuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH) and not (
        has_jwks or has_jwks_uri
    ):
        raise ApiBadRequest(f"token auth method {method.name} needs the client's keys in jwks or jwksUri")
    if method is ClientAuthMethod.TLS_CLIENT_AUTH:
        names = mtls.TLS_CLIENT_AUTH_FIELD_NAMES.values()
        given = [name for name in names if tls_attributes.get(name)]
        # RFC 8705 §2.1.2: "A client using the "tls_client_auth" authentication method MUST use exactly one
        # of the below metadata parameters to indicate the certificate subject value".
        if len(given) != 1:
            raise ApiBadRequest("token auth method TLS_CLIENT_AUTH needs exactly one of " + ", ".join(names))


FAPI2_METHOD_NAMES = ", ".join(sorted(method.name for method in FAPI2_AUTH_METHODS))


def validate_fapi2_client(method: ClientAuthMethod, *, fapi2: bool) -> None:
    """FAPI 2.0 §5.3.2.1 (FAPI-09): the authorization server "shall only support confidential clients" and
    "shall authenticate clients using one of the following methods: MTLS ... private_key_jwt". A client of
    a FAPI 2.0 service registered with another method could never push: refused at registration (FAPI-09)."""
    if fapi2 and method not in FAPI2_AUTH_METHODS:
        raise ApiBadRequest(
            f"token auth method {method.name} is not allowed in FAPI 2.0 mode (fapiModes FAPI2_SECURITY): "
            f"use one of {FAPI2_METHOD_NAMES}"
        )


def validate_alias(alias: str) -> str:
    """Aliases share the ``client_id`` namespace with numeric ids, so a numeric alias would be ambiguous."""
    if not alias or len(alias) > MAX_ALIAS_LENGTH or alias.isdigit() or not alias.isprintable() or " " in alias:
        raise ApiBadRequest(
            f"clientIdAlias must be 1 to {MAX_ALIAS_LENGTH} printable characters without spaces, and not all digits"
        )
    return alias


def validate_jwks(jwks: str) -> str:
    """RFC 7591 §2: "jwks: Client's JSON Web Key Set [RFC7517] document value, which contains the
    client's public keys". Every entry must import as a public key (``jose.import_public_jwk``); one that
    is refused is named by its index and ``kid``, never by its key material. Valid public keys the server
    does not verify with (an X25519 key, a ``"use": "enc"`` key) are kept: the set is the client's."""
    try:
        document = json_input.loads(jwks)
    except json_input.JsonInputError as error:
        raise ApiBadRequest(f"jwks must be a JSON Web Key Set document (a string of JSON): {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ApiBadRequest('jwks must be a JSON object with a "keys" array')
    for index, entry in enumerate(document["keys"]):
        try:
            jose.import_public_jwk(entry)
        except jose.JoseFailure as failure:
            raise ApiBadRequest(f"jwks key {index}{_kid_label(entry)} {failure}: jwks holds public keys only") from None
    return jwks


def _kid_label(entry: object) -> str:
    kid = entry.get("kid") if isinstance(entry, dict) else None
    if isinstance(kid, str) and len(kid) <= 100 and kid.isascii() and kid.isprintable():
        return f" (kid '{kid}')"
    return ""
