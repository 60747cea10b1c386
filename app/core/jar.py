"""Request Objects (RFC 9101, JAR) pushed to the PAR endpoint (RFC 9126 §3).

RFC 9126 §3: "Clients MAY use the request parameter as defined in JAR [RFC9101] to push a Request
Object JWT to the authorization server. The rules for processing, signing, and encryption of the
Request Object as defined in JAR [RFC9101] apply."

Three steps, in order: :func:`verify_request_object` checks the JWT and returns its claims;
:func:`request_object_parameters` turns the claims into the form parameters the rest of the server
validates; :func:`merge_with_outer` adds the client-authentication parameters of the form body.

A *missing* request object for a client that must send one is not this module's error: RFC 9126 §2.3
answers it with ``invalid_request`` (PAR-22, NOTE-06 in docs/requirements.md), raised by
``app.core.authorization_request``. Everything here concerns a request object that is present and wrong:
``invalid_request_object``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.core import jose, result_codes
from app.core.client_keys import ClientKeys, verify_with_client_keys
from app.core.errors import InvalidRequest, OAuthError
from app.core.model import ClientRecord
from app.core.params import MULTI_VALUED_PARAMETERS, RequestParameters

# RFC 9101 §10.8's explicit type, and the generic JWT type most existing clients send (see _check_type).
ACCEPTED_TYPES = frozenset({"oauth-authz-req+jwt", "jwt"})
# The claims that secure the JWT itself rather than carry authorization request parameters.
JWT_ONLY_CLAIMS = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti"})
# RFC 9126 §3: the "parameters required by a given client authentication method" may stay in the form.
OUTER_CLIENT_AUTHENTICATION_PARAMETERS = frozenset(
    {"client_id", "client_secret", "client_assertion", "client_assertion_type"}
)
# FAPI 1.0 Advanced §5.2.2 (JAR-07 in docs/requirements.md): exp at most 60 minutes after nbf, nbf at most
# 60 minutes in the past. A profile rule, not a deployment limit, hence a constant.
FAPI_MAX_REQUEST_OBJECT_LIFETIME = timedelta(minutes=60)
_CREDENTIAL_PARAMETERS = OUTER_CLIENT_AUTHENTICATION_PARAMETERS - {"client_id"}
_JWE_PART_COUNT = 5
# As app.core.params refuses in form values: control characters other than TAB, LF and CR.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_REPORTED_NAME_LENGTH = 40


class InvalidRequestObject(OAuthError):
    """RFC 9101 §7: "invalid_request_object: The request parameter contains an invalid Request Object."

    RFC 9101 §6.2: "If the key is not associated with the client or if signature validation fails, the
    authorization server MUST return an invalid_request_object error"; §6.1 likewise when decryption
    fails. Every other defect of a pushed request object is reported with the same code (JAR-10).
    """

    error = "invalid_request_object"
    default_result_code = result_codes.INVALID_REQUEST_OBJECT


@dataclass(frozen=True, slots=True)
class RequestObjectPolicy:
    """What a request object must satisfy. ``issuer`` is the expected ``aud``.

    ``require_exp_nbf`` is the FAPI profile: ``exp`` and ``nbf`` required, at most 60 minutes apart,
    ``nbf`` at most 60 minutes old. ``allowed_algorithms`` may only narrow the asymmetric algorithms
    (FAPI: PS256, ES256, EdDSA); ``none`` and MACs can never be configured, since request objects are
    verified with the client's public keys.
    """

    issuer: str
    clock_skew: timedelta
    max_lifetime: timedelta
    require_exp_nbf: bool = False
    allowed_algorithms: tuple[str, ...] = field(default=jose.ASYMMETRIC_ALGORITHMS)

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ValueError("the request object policy needs the issuer identifier")
        if not self.allowed_algorithms or not set(self.allowed_algorithms) <= set(jose.ASYMMETRIC_ALGORITHMS):
            raise ValueError("request object algorithms must be a non-empty subset of the asymmetric ones")
        if self.clock_skew < timedelta(0) or self.max_lifetime <= timedelta(0):
            raise ValueError("clock_skew must not be negative and max_lifetime must be positive")


async def verify_request_object(
    request_object: str,
    *,
    client: ClientRecord,
    client_keys: ClientKeys,
    policy: RequestObjectPolicy,
    now: datetime,
) -> dict[str, Any]:
    """Verify a request object pushed by the authenticated ``client``; return its claims.

    RFC 9126 §3: "The authorization server MUST take the following steps beyond the processing rules
    defined in Section 2.1: 1. If applicable, decrypt the Request Object as specified in JAR, Section
    6.1. 2. Validate the Request Object signature as specified in JAR, Section 6.2. 3. If the client
    has authentication credentials established with the authorization server, reject the request if
    the authenticated client_id does not match the client_id claim in the Request Object."

    Raises :class:`InvalidRequestObject`. The claims returned are guaranteed to convert with
    :func:`request_object_parameters`.
    """
    if request_object.count(".") == _JWE_PART_COUNT - 1:
        # RFC 9101 §6.1: "If decryption fails, the authorization server MUST return an
        # invalid_request_object error". We publish no encryption keys, so no JWE can be decrypted.
        raise InvalidRequestObject("encrypted request objects are not supported")
    try:
        header = jose.unverified_header(request_object)
    except jose.JoseFailure as error:
        raise InvalidRequestObject(f"the request object is rejected: {error}") from error
    algorithm = _check_algorithm(header["alg"], policy)
    _check_type(header.get("typ"))
    claims = await _verify_signature(request_object, algorithm, client=client, client_keys=client_keys)
    _check_nested_requests(claims)
    _check_issuer(claims.get("iss"), client)
    _check_audience(claims.get("aud"), policy)
    _check_client_id(claims.get("client_id"), client)
    _check_times(claims, policy, now)
    request_object_parameters(claims)  # refuses claims that cannot be authorization request parameters
    return claims


def request_object_parameters(claims: dict[str, Any]) -> RequestParameters:
    """The request object's claims as the form parameters the authorization request rules validate.

    RFC 9101 §4: "Parameter names and string values MUST be included as JSON strings. ... Numerical
    values MUST be included as JSON numbers." Strings are kept as they are and numbers become their
    JSON text. ``resource`` (RFC 8707 §2: "MAY be used multiple times") may be a string or an array
    of strings, which become repeated parameters. Any other array or object (``authorization_details``,
    RFC 9396; OIDC ``claims``) becomes its compact JSON text, the form it has as a form parameter.
    Booleans become ``true`` / ``false``. The JWT-only claims (iss, aud, exp, nbf, iat, jti) are dropped.
    """
    pairs: list[tuple[str, str]] = []
    for name, value in claims.items():
        if not name or _CONTROL_CHARACTERS.search(name):
            raise InvalidRequestObject("the request object has a claim with an empty or malformed name")
        if name in JWT_ONLY_CLAIMS:
            continue
        if name in MULTI_VALUED_PARAMETERS and isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise InvalidRequestObject(f"the request object's {_reportable(name)} claim must hold strings")
            pairs.extend((name, _checked_string(name, item)) for item in value)
        else:
            pairs.append((name, _parameter_value(name, value)))
    return RequestParameters(tuple(pairs))


def merge_with_outer(outer: RequestParameters, inner: RequestParameters) -> RequestParameters:
    """The parameters of a pushed request that carries a request object.

    RFC 9101 §6.3: "The authorization server MUST only use the parameters in the Request Object, even
    if the same parameter is provided in the query parameter. The client ID values in the client_id
    request parameter and in the Request Object client_id claim MUST be identical." RFC 9126 §3: the
    parameters "required by a given client authentication method ... are the only parameters other
    than request in the form body"; "All other request parameters ... MUST appear as claims of the
    JWT". Of ``outer`` only the client-authentication parameters are kept (client_id, client_secret,
    client_assertion, client_assertion_type; JAR-03, PAR-27); the rest is ignored, as the conformance
    tests ``…-ensure-different-state-inside-and-outside-request-object`` and
    ``…-state-only-outside-request-object-not-used`` expect. One outer parameter is refused rather than
    ignored, since dropping it would hide it from the later checks: RFC 9126 §2.1: "Reject the request
    if the request_uri authorization request parameter is provided." (PAR-11; ``invalid_request``).

    A differing outer ``client_id`` is ``invalid_request_object`` (JAR-04): the client authenticated
    with the outer value, so its credentials are not in doubt (``invalid_client`` would wrongly blame
    them and, with HTTP Basic, trigger a 401 challenge); what is inconsistent is the request object,
    which RFC 9101 §7 defines ``invalid_request_object`` for.
    """
    if "request_uri" in outer:
        raise InvalidRequest(
            "the request_uri parameter is not allowed at the pushed authorization request endpoint",
            result_code=result_codes.REQUEST_URI_PUSHED,
        )
    inner_client_id = inner.get("client_id")
    outer_client_id = outer.get("client_id")
    if outer_client_id is not None and inner_client_id is not None and outer_client_id != inner_client_id:
        raise InvalidRequestObject("the client_id parameter and the request object's client_id claim must be identical")
    client_id = inner_client_id or outer_client_id
    identification = (("client_id", client_id),) if client_id else ()
    # Credentials come from the form only: a client_secret or client_assertion claim is not used.
    authentication = tuple((name, value) for name, value in outer.pairs if name in _CREDENTIAL_PARAMETERS)
    request = tuple((name, value) for name, value in inner.pairs if name not in OUTER_CLIENT_AUTHENTICATION_PARAMETERS)
    return RequestParameters(identification + authentication + request)


def _check_algorithm(algorithm: str, policy: RequestObjectPolicy) -> str:
    """RFC 9101 §6.2: "Algorithm verification MUST be performed, as specified in Sections 3.1 and 3.2
    of [RFC8725]." JAR-01: never ``none``; the policy's asymmetric algorithms only, so never a MAC."""
    if algorithm not in policy.allowed_algorithms:
        raise InvalidRequestObject(f"the request object's alg {algorithm[:20]} is not allowed")
    return algorithm


def _check_type(typ: Any) -> None:
    """RFC 9101 §10.8: "One would explicitly type a Request Object by including a typ Header Parameter
    with the value oauth-authz-req+jwt"; it also notes that "requiring explicitly typed Request Objects
    at existing authorization servers will break most existing deployments".

    So ``typ`` is optional; when present it must be ``oauth-authz-req+jwt`` or ``JWT`` (either with the
    ``application/`` prefix, in any case). Any other type is a different kind of JWT (a client
    assertion, an ID token, a DPoP proof ...) being passed off as a request object (JAR-08).
    """
    if typ is None:
        return
    if not isinstance(typ, str):
        raise InvalidRequestObject("the request object's typ header must be a string")
    if jose.type_header_media_type(typ) not in ACCEPTED_TYPES:
        raise InvalidRequestObject("the request object's typ header must be oauth-authz-req+jwt or JWT")


async def _verify_signature(
    request_object: str, algorithm: str, *, client: ClientRecord, client_keys: ClientKeys
) -> dict[str, Any]:
    """RFC 9101 §6.2: "If a kid Header Parameter is present, the key identified MUST be the key used
    and MUST be a key associated with the client. The signature MUST be validated using a key
    associated with the client and the algorithm specified in the alg Header Parameter." (JAR-06)"""
    try:
        verified = await verify_with_client_keys(request_object, algorithm, client=client, client_keys=client_keys)
    except jose.JoseFailure as error:
        raise InvalidRequestObject(f"the request object is rejected: {error}") from error
    return verified.claims


def _check_nested_requests(claims: dict[str, Any]) -> None:
    """RFC 9101 §10.7: "neither request nor request_uri can appear in a Request Object" (JAR-02); at the
    PAR endpoint a ``request_uri`` is refused twice over (RFC 9126 §2.1, PAR-11)."""
    for name in ("request", "request_uri"):
        if name in claims:
            raise InvalidRequestObject(f"the request object must not contain a {name} claim")


def _check_issuer(issuer: Any, client: ClientRecord) -> None:
    """RFC 9101 §4: "If signed, the Authorization Request Object SHOULD contain the Claims iss (issuer)
    and aud (audience)". RFC 9126 §3: "requiring the iss claim to match the client_id is at the
    discretion of the authorization server": we require it (JAR-07, PAR-29)."""
    if not isinstance(issuer, str) or issuer not in client.identifiers:
        raise InvalidRequestObject("the request object's iss claim must be the client_id")


def _check_audience(audience: Any, policy: RequestObjectPolicy) -> None:
    """RFC 9101 §4: "The value of aud should be the value of the authorization server (AS) issuer, as
    defined in RFC 8414." The issuer, as a string or within an array (JAR-07). Unlike client assertions
    (RFC 9126 §2), the PAR endpoint URL does not name us here: the FAPI 1 test
    ``…-par-pushed-authorization-url-as-audience-in-request-object`` expects it to be refused."""
    values = audience if isinstance(audience, list) else [audience]
    if policy.issuer not in [value for value in values if isinstance(value, str)]:
        raise InvalidRequestObject("the request object's aud claim must contain the issuer identifier")


def _check_client_id(client_id: Any, client: ClientRecord) -> None:
    """RFC 9126 §3: "reject the request if the authenticated client_id does not match the client_id
    claim in the Request Object" (PAR-29, JAR-04)."""
    if not isinstance(client_id, str) or client_id not in client.identifiers:
        raise InvalidRequestObject("the request object's client_id claim must be the authenticated client")


def _check_times(claims: dict[str, Any], policy: RequestObjectPolicy, now: datetime) -> None:
    """RFC 7519 §4.1.4 / §4.1.5: a JWT MUST NOT be accepted on or after ``exp`` or before ``nbf`` (with
    the policy's clock skew). ``exp`` is required and the lifetime ``exp - (nbf or iat or now)`` bounded,
    so that a leaked request object is short-lived (JAR-07).

    With ``require_exp_nbf``, FAPI 1.0 Advanced §5.2.2: "shall require the request object to contain an
    exp claim that has a lifetime of no longer than 60 minutes after the nbf claim" and "shall require
    the request object to contain an nbf claim that is no longer than 60 minutes in the past". The skew
    applies to comparisons with our clock only, never to ``exp - nbf``.
    """
    try:
        times = jose.check_validity_times(
            claims,
            subject="the request object",
            now=now,
            clock_skew=policy.clock_skew,
            order=("nbf", "iat"),
            require_nbf=policy.require_exp_nbf,
        )
    except jose.TimeClaimFailure as error:
        raise InvalidRequestObject(str(error)) from None
    current = now.timestamp()
    start = next((time for time in (times.nbf, times.iat) if time is not None), current)
    if times.exp - start > policy.max_lifetime.total_seconds():
        raise InvalidRequestObject(f"the request object lives longer than {int(policy.max_lifetime.total_seconds())} s")
    if times.nbf is not None and policy.require_exp_nbf:
        fapi_limit = FAPI_MAX_REQUEST_OBJECT_LIFETIME.total_seconds()
        if times.nbf < current - fapi_limit - policy.clock_skew.total_seconds():
            raise InvalidRequestObject("the request object's nbf must be at most 60 minutes in the past")
        if times.exp - times.nbf > fapi_limit:
            raise InvalidRequestObject("the request object's exp must be at most 60 minutes after its nbf")


def _parameter_value(name: str, value: Any) -> str:
    if isinstance(value, str):
        return _checked_string(name, value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequestObject(f"the request object's {_reportable(name)} claim is not a finite number")
        return json.dumps(value)
    if isinstance(value, list | dict):
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError as error:
            raise InvalidRequestObject(f"the request object's {_reportable(name)} claim is not valid JSON") from error
    raise InvalidRequestObject(f"the request object's {_reportable(name)} claim must not be null")


def _checked_string(name: str, value: str) -> str:
    if _CONTROL_CHARACTERS.search(value):
        raise InvalidRequestObject(f"the request object's {_reportable(name)} claim contains control characters")
    return value


def _reportable(name: str) -> str:
    return name if len(name) <= MAX_REPORTED_NAME_LENGTH else name[:MAX_REPORTED_NAME_LENGTH] + "..."
