"""JWT client assertions: ``private_key_jwt`` and ``client_secret_jwt`` (RFC 7523 §2.2, §3; OIDC Core §9).

RFC 9126 §2: the PAR endpoint authenticates clients as the token endpoint does, so these are the same
rules, including the audience conflict of NOTE-01 in docs/requirements.md, settled per service.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.core import jose, result_codes
from app.core.client_keys import ClientKeys, verify_with_client_keys
from app.core.errors import InvalidClient
from app.core.model import AudiencePolicy, ClientAuthMethod, ClientRecord
from app.core.ports import ReplayStore

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True, slots=True)
class AssertionPolicy:
    audience_policy: AudiencePolicy
    issuer: str
    token_endpoint: str | None
    par_endpoint: str
    clock_skew: timedelta
    max_lifetime: timedelta


async def verify_client_assertion(
    assertion: str,
    assertion_type: str | None,
    *,
    client: ClientRecord,
    client_identifiers: frozenset[str],
    client_keys: ClientKeys,
    client_secret: str | None,
    policy: AssertionPolicy,
    replay_store: ReplayStore,
    now: datetime,
) -> None:
    """Verify a client assertion made with the client's registered method; raise InvalidClient.

    ``client_identifiers`` are the values that name the client (its id and alias): RFC 7523 §3 (1),
    (2): "The JWT MUST contain an "iss" (issuer) claim that contains ... the client_id" and the same
    for "sub".
    """
    if assertion_type != CLIENT_ASSERTION_TYPE:
        raise _failure(
            f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}", result_codes.CLIENT_ASSERTION_TYPE_WRONG
        )
    method = client.token_auth_method
    try:
        header = jose.unverified_header(assertion)
        algorithm = _check_algorithm(header["alg"], method=method, registered=client.token_auth_sign_alg)
        verified = await _verify_signature(
            assertion, algorithm, client=client, client_keys=client_keys, client_secret=client_secret
        )
    except jose.JoseFailure as error:
        raise _failure(
            f"the client assertion is rejected: {error}", result_codes.CLIENT_ASSERTION_UNVERIFIED
        ) from error
    claims = verified.claims
    for claim in ("iss", "sub"):
        value = claims.get(claim)
        if not isinstance(value, str) or value not in client_identifiers:  # a list is not even hashable
            raise _failure(
                f"the client assertion's {claim} claim must be the client_id",
                result_codes.CLIENT_ASSERTION_ISSUER_WRONG,
            )
    _check_audience(claims.get("aud"), policy)
    expires_at = _check_times(claims, policy, now)
    jti = jose.jti_value(claims.get("jti"))
    if jti is None:
        raise _failure(
            f"the client assertion needs a jti claim of 1 to {jose.MAX_JTI_LENGTH} characters",
            result_codes.CLIENT_ASSERTION_JTI_MISSING,
        )
    # OIDC Core §9: "The JWT MUST only be used once"; keys are per client so clients cannot collide.
    key = hashlib.sha256(f"client_assertion:{client.id}:{jti}".encode()).hexdigest()
    if not await replay_store.remember(key, expires_at=expires_at + policy.clock_skew):
        raise _failure("the client assertion was already used (jti replay)", result_codes.CLIENT_ASSERTION_REPLAYED)


def _check_algorithm(algorithm: str, *, method: ClientAuthMethod, registered: str | None) -> str:
    """RFC 7523 §3 (9) and FAPI-13: never ``none``; asymmetric for private_key_jwt, HMAC for
    client_secret_jwt; the registered token_endpoint_auth_signing_alg when there is one."""
    allowed = jose.ASYMMETRIC_ALGORITHMS if method is ClientAuthMethod.PRIVATE_KEY_JWT else jose.SYMMETRIC_ALGORITHMS
    if algorithm not in allowed:
        raise jose.JoseFailure(f"alg {algorithm[:20]} is not allowed for {method.value}")
    if registered is not None and algorithm != registered:
        raise jose.JoseFailure(f"alg must be the registered tokenAuthSignAlg {registered}")
    return algorithm


async def _verify_signature(
    assertion: str, algorithm: str, *, client: ClientRecord, client_keys: ClientKeys, client_secret: str | None
) -> jose.VerifiedJwt:
    if client.token_auth_method is ClientAuthMethod.CLIENT_SECRET_JWT:
        if not client_secret:
            raise jose.JoseFailure("the client has no secret to verify client_secret_jwt with")
        return jose.verify(assertion, jose.symmetric_key(client_secret), algorithm)
    return await verify_with_client_keys(assertion, algorithm, client=client, client_keys=client_keys)


def _check_audience(audience: Any, policy: AssertionPolicy) -> None:
    """RFC 7523 §3 (3): "The JWT MUST contain an "aud" (audience) claim containing a value that
    identifies the authorization server as an intended audience"; which values do is the policy."""
    if policy.audience_policy is AudiencePolicy.FAPI2:
        if audience != policy.issuer:
            raise _failure(
                "the client assertion's aud must be the issuer identifier, as a string",
                result_codes.CLIENT_ASSERTION_AUDIENCE_WRONG,
            )
        return
    accepted = {policy.issuer, policy.par_endpoint} | ({policy.token_endpoint} if policy.token_endpoint else set())
    values = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(value, str) and value in accepted for value in values):
        raise _failure(
            "the client assertion's aud must name this authorization server (issuer, token endpoint "
            "or pushed authorization request endpoint)",
            result_codes.CLIENT_ASSERTION_AUDIENCE_WRONG,
        )


def _check_times(claims: dict[str, Any], policy: AssertionPolicy, now: datetime) -> datetime:
    """RFC 7523 §3 (4)-(6): exp required and not passed; nbf and iat not in the future beyond the skew;
    and a bound on the assertion's lifetime so that a leaked one is short-lived."""
    try:
        times = jose.check_validity_times(
            claims, subject="the client assertion", now=now, clock_skew=policy.clock_skew, order=("iat", "nbf")
        )
    except jose.TimeClaimFailure as error:
        raise _failure(
            str(error),
            result_codes.CLIENT_ASSERTION_TIME_MALFORMED
            if error.malformed
            else result_codes.CLIENT_ASSERTION_TIME_REJECTED,
        ) from None
    skew = policy.clock_skew.total_seconds()
    issued = times.iat if times.iat is not None else now.timestamp()
    if times.exp - issued > policy.max_lifetime.total_seconds() + skew:
        raise _failure(
            f"the client assertion lives longer than {int(policy.max_lifetime.total_seconds())} s",
            result_codes.CLIENT_ASSERTION_TIME_REJECTED,
        )
    return datetime.fromtimestamp(times.exp, tz=now.tzinfo)


def _failure(description: str, result_code: str) -> InvalidClient:
    return InvalidClient(description, result_code=result_code, used_authorization_header=False)
