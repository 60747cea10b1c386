"""Client authentication at the PAR endpoint, exactly as at the token endpoint (RFC 9126 §2).

RFC 9126 §2: "the client authenticates to the authorization server ... using the same method it
would use at the token endpoint": ``none``, ``client_secret_basic``, ``client_secret_post``,
``client_secret_jwt`` and ``private_key_jwt`` (RFC 7523), ``tls_client_auth`` and
``self_signed_tls_client_auth`` (RFC 8705).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from urllib.parse import unquote_plus

from app.core import jose, mtls, result_codes
from app.core.client_assertion import AssertionPolicy, verify_client_assertion
from app.core.client_keys import ClientKeys
from app.core.dpop import DpopNonces
from app.core.errors import InvalidClient, InvalidRequest, TemporarilyUnavailable
from app.core.jar import RequestObjectPolicy
from app.core.model import ClientAuthMethod, ClientRecord, ServiceRecord
from app.core.params import RequestParameters
from app.core.ports import ReplayStore, SecretHashStore
from app.core.secrets import SecretBox, SecretHasher

# RFC 9126 §2.1: these are used for client authentication only and are not part of the stored request.
CLIENT_AUTHENTICATION_PARAMETERS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """``client_secret_basic`` credentials: from the Authorization header, or the backend API's
    ``clientId`` / ``clientSecret`` fields (which the authorization server took from that header)."""

    client_id: str
    client_secret: str


def parse_basic_authorization(header_value: str) -> BasicCredentials:
    """Decode an ``Authorization: Basic`` header.

    RFC 6749 §2.3.1: "The client identifier is encoded using the "application/x-www-form-urlencoded"
    encoding algorithm ..., and the encoded value is used as the username; the client password is
    encoded using the same algorithm and used as the password."
    """
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise InvalidClient("the Authorization header must use the Basic scheme", used_authorization_header=True)
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text given to b64decode
        raise InvalidClient(
            "the Basic credentials are not valid base64 of UTF-8", used_authorization_header=True
        ) from None
    username, separator, password = decoded.partition(":")
    if not separator or not username:
        raise InvalidClient(
            "the Basic credentials must have the form client_id:client_secret", used_authorization_header=True
        )
    try:
        return BasicCredentials(
            client_id=unquote_plus(username, errors="strict"), client_secret=unquote_plus(password, errors="strict")
        )
    except UnicodeDecodeError:
        raise InvalidClient(
            "the Basic credentials are not valid form-encoded UTF-8", used_authorization_header=True
        ) from None


def form_decoded(basic: BasicCredentials) -> BasicCredentials | None:
    """The credentials form-decoded once, when they may still be form-encoded; None when that would not
    change them or does not give UTF-8.

    RFC 6749 §2.3.1 has the client form-encode its id and secret before Basic-encoding them, but the
    ``BasicCredentials`` helpers of Authlete's SDKs only base64-decode the header, so an authorization
    server built on them forwards the still-encoded values (``_`` as ``%5F``) to the backend API.
    """
    if not any(mark in basic.client_id + basic.client_secret for mark in "%+"):
        return None
    try:
        decoded = BasicCredentials(
            client_id=unquote_plus(basic.client_id, errors="strict"),
            client_secret=unquote_plus(basic.client_secret, errors="strict"),
        )
    except UnicodeDecodeError:
        return None
    return decoded if decoded != basic and decoded.client_id else None


def claimed_client_id(params: RequestParameters, basic: BasicCredentials | None) -> str:
    """The client identifier the request claims, from Basic credentials, ``client_id``, or the ``iss`` of
    a client assertion (RFC 7521 §4.2: client_id is then optional).

    RFC 9126 §2.1: "client_id" is REQUIRED; when the client also authenticates with HTTP Basic, the
    two must name the same client. A request that names the client only through Basic is accepted.
    """
    form_client_id = params.get("client_id")
    assertion = params.get("client_assertion")
    if basic is None and form_client_id is None and assertion is not None:
        try:
            issuer = jose.unverified_claims(assertion).get("iss")
        except jose.JoseFailure as error:
            raise InvalidClient(
                f"the client assertion cannot be read: {error}",
                result_code=result_codes.CLIENT_ASSERTION_UNVERIFIED,
                used_authorization_header=False,
            ) from None
        if isinstance(issuer, str) and issuer:
            return issuer
    if basic is not None:
        if form_client_id is not None and form_client_id != basic.client_id:
            raise InvalidRequest(
                "the client_id parameter does not match the client of the Authorization header",
                result_code=result_codes.CLIENT_ID_MISMATCH,
            )
        return basic.client_id
    if form_client_id is None:
        raise InvalidRequest("the client_id parameter is required", result_code=result_codes.CLIENT_ID_MISSING)
    return form_client_id


class Presented(Enum):
    """Which client credentials a request carries (certificates are transport, checked separately)."""

    NOTHING = "no credentials"
    BASIC = "client_secret_basic"
    POST = "client_secret_post"
    ASSERTION = "a client assertion"


ACCEPTED_PRESENTATION = {
    ClientAuthMethod.NONE: Presented.NOTHING,
    ClientAuthMethod.CLIENT_SECRET_BASIC: Presented.BASIC,
    ClientAuthMethod.CLIENT_SECRET_POST: Presented.POST,
    ClientAuthMethod.CLIENT_SECRET_JWT: Presented.ASSERTION,
    ClientAuthMethod.PRIVATE_KEY_JWT: Presented.ASSERTION,
    ClientAuthMethod.TLS_CLIENT_AUTH: Presented.NOTHING,
    ClientAuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH: Presented.NOTHING,
}


def presented_credentials(params: RequestParameters, basic: BasicCredentials | None) -> Presented:
    """The one kind of credentials the request carries.

    RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each request."
    """
    presented: list[Presented] = []
    if basic is not None:
        presented.append(Presented.BASIC)
    if "client_secret" in params:
        presented.append(Presented.POST)
    if "client_assertion" in params or "client_assertion_type" in params:
        presented.append(Presented.ASSERTION)
    if len(presented) > 1:
        raise InvalidRequest("the request uses more than one client authentication method (RFC 6749 §2.3)")
    return presented[0] if presented else Presented.NOTHING


class SlowHashChecks:
    """How many imported (slow) hashes a process checks at once, and how many more may wait their turn.

    Each check costs a good part of a second of a core (bench/RESULTS.md, "Figures behind the code's
    choices") and a wrong secret costs as much as a right one, so however many arrive, at most
    ``in_flight`` cores are spent on them; beyond ``waiting`` queued checks a push is answered at once
    with 503 and Retry-After, rather than queueing without bound."""

    def __init__(self, *, in_flight: int, waiting: int) -> None:
        self._slots = asyncio.Semaphore(in_flight)
        self._in_flight = in_flight
        self._most_waiting = waiting
        self._admitted = 0  # running and waiting

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self._admitted >= self._in_flight + self._most_waiting:
            raise TemporarilyUnavailable("too many client secret checks are in progress; retry later")
        self._admitted += 1
        try:
            async with self._slots:
                yield
        finally:
            self._admitted -= 1


@dataclass(frozen=True, slots=True)
class PushPolicy:
    """What every push of a server shares: secrets and keys to authenticate clients, DPoP nonces, and the
    bounds on assertions and request objects. Built once, with the server's state."""

    hasher: SecretHasher
    secret_box: SecretBox
    clock_skew: timedelta
    max_assertion_lifetime: timedelta
    dpop_nonce_key: bytes
    dpop_max_age: timedelta
    max_request_object_lifetime: timedelta
    imported_hash_checks: SlowHashChecks  # shared by the process's pushes

    def dpop_nonces_for(self, service: ServiceRecord) -> DpopNonces:
        """Nonces keyed per service: valid on every replica, useless at another service."""
        key = hmac.new(self.dpop_nonce_key, f"dpop-nonce:{service.id}".encode(), hashlib.sha256).digest()
        return DpopNonces(key, lifetime=timedelta(seconds=service.dpop_nonce_duration))

    def request_object_policy(self, service: ServiceRecord, client: ClientRecord) -> RequestObjectPolicy:
        return RequestObjectPolicy(
            issuer=service.issuer,
            clock_skew=self.clock_skew,
            max_lifetime=self.max_request_object_lifetime,
            require_exp_nbf=service.fapi2,
            allowed_algorithms=(client.request_sign_alg,) if client.request_sign_alg else jose.ASYMMETRIC_ALGORITHMS,
        )


@dataclass(frozen=True, slots=True)
class PushContext:
    """What one push needs beyond its request and its service's records: the server's ``policy``, and the
    stores it reaches on its own connection (secret hashes, client keys, replay memory). The policy is
    shared rather than copied in: setting its eight fields on every push cost a few microseconds."""

    policy: PushPolicy
    secret_hashes: SecretHashStore
    client_keys: ClientKeys
    replay_store: ReplayStore


@dataclass(frozen=True, slots=True)
class ClientAuthentication:
    """The request's client authentication input: credentials from the body, the Authorization header
    (or the backend API's clientId/clientSecret), and the TLS client certificate, when there is one."""

    params: RequestParameters
    basic: BasicCredentials | None
    certificate: str | None


async def authenticate_client(
    client: ClientRecord | None,
    request: ClientAuthentication,
    *,
    service: ServiceRecord,
    context: PushContext,
    now: datetime,
) -> ClientAuthMethod:
    """Authenticate ``client`` with the method it registered; return that method.

    RFC 6749 §5.2 ``invalid_client``: "Client authentication failed (e.g., unknown client, no client
    authentication included, or unsupported authentication method)."
    """
    used_header = request.basic is not None
    params = request.params
    presented = presented_credentials(params, request.basic)
    presented_secret = request.basic.client_secret if request.basic else params.get("client_secret")
    if client is None:
        context.policy.hasher.verify(presented_secret or "", None)  # same cost as a wrong secret
        raise InvalidClient(
            "the client is not registered with this service",
            result_code=result_codes.CLIENT_NOT_REGISTERED,
            used_authorization_header=used_header,
        )
    registered = client.token_auth_method
    if registered not in service.supported_token_auth_methods:
        raise InvalidClient(
            f"the client authentication method '{registered.value}' is not enabled for this service",
            result_code=result_codes.CLIENT_AUTH_METHOD_DISABLED,
            used_authorization_header=used_header,
        )
    if presented is not ACCEPTED_PRESENTATION[registered]:
        if registered is ClientAuthMethod.NONE:
            description = "the client is registered as public (token auth method 'none') and must not send credentials"
        elif presented is Presented.NOTHING:
            description = f"client authentication is required: the client is registered for '{registered.value}'"
        else:
            description = f"the client is registered for '{registered.value}' but the request used {presented.value}"
        raise InvalidClient(
            description, result_code=result_codes.CLIENT_AUTH_METHOD_MISMATCH, used_authorization_header=used_header
        )
    if registered in (ClientAuthMethod.CLIENT_SECRET_BASIC, ClientAuthMethod.CLIENT_SECRET_POST):
        if presented_secret is None or not await _verify_secret(presented_secret, client, context):
            raise InvalidClient(
                "the client secret is wrong",
                result_code=result_codes.CLIENT_AUTHENTICATION_FAILED,
                used_authorization_header=used_header,
            )
    elif registered in (ClientAuthMethod.CLIENT_SECRET_JWT, ClientAuthMethod.PRIVATE_KEY_JWT):
        await verify_client_assertion(
            params.get("client_assertion") or "",
            params.get("client_assertion_type"),
            client=client,
            client_identifiers=client.identifiers,
            client_keys=context.client_keys,
            client_secret=context.policy.secret_box.open(client.encrypted_secret) if client.encrypted_secret else None,
            policy=AssertionPolicy(
                audience_policy=service.client_assertion_audience_policy,
                issuer=service.issuer,
                token_endpoint=service.token_endpoint,
                par_endpoint=service.pushed_auth_req_endpoint,
                clock_skew=context.policy.clock_skew,
                max_lifetime=context.policy.max_assertion_lifetime,
            ),
            replay_store=context.replay_store,
            now=now,
        )
    elif registered in (ClientAuthMethod.TLS_CLIENT_AUTH, ClientAuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH):
        await _authenticate_certificate(client, request.certificate, client_keys=context.client_keys, now=now)
    return registered


async def _verify_secret(secret: str, client: ClientRecord, context: PushContext) -> bool:
    """RFC 6749 §2.3.1: the client password. A hash imported from another server (bcrypt, pbkdf2) is
    slow by design: it is checked in a worker thread, so that other requests go on meanwhile, and after
    its first success it is replaced by the keyed hash, which costs microseconds (RFC 6819 §5.1.4.2.2).
    Only so many such checks run or wait at once (``SlowHashChecks``); those waiting hold no connection."""
    stored = client.secret_hash
    if context.policy.hasher.is_keyed(stored):
        return context.policy.hasher.verify(secret, stored)
    assert stored is not None  # is_keyed answers True for None
    await context.secret_hashes.release()
    async with context.policy.imported_hash_checks.turn():
        verified = await asyncio.to_thread(context.policy.hasher.verify, secret, stored)
    if not verified:
        return False
    keyed = context.policy.hasher.hash(secret)
    # The check took a while: a secret updated meanwhile wins, and the one it replaced stops working now.
    return await context.secret_hashes.replace_secret_hash(client, stored, keyed) == keyed


async def _authenticate_certificate(
    client: ClientRecord, certificate: str | None, *, client_keys: ClientKeys, now: datetime
) -> None:
    """RFC 8705 §2: "the authorization server ... MUST enforce the binding between client and certificate"."""
    if certificate is None:
        raise InvalidClient(
            "the request does not carry a client certificate (mutual TLS)",
            result_code=result_codes.CLIENT_CERTIFICATE_MISSING,
            used_authorization_header=False,
        )
    parsed = mtls.parse_client_certificate(certificate)
    if client.token_auth_method is ClientAuthMethod.TLS_CLIENT_AUTH:
        registration = mtls.TlsClientAuthRegistration(
            subject_dn=client.tls_client_auth_subject_dn,
            san_dns=client.tls_client_auth_san_dns,
            san_uri=client.tls_client_auth_san_uri,
            san_ip=client.tls_client_auth_san_ip,
            san_email=client.tls_client_auth_san_email,
        )
        mtls.verify_tls_client_auth(parsed, registration, now=now)
    else:
        mtls.verify_self_signed_tls_client_auth(parsed, await client_keys(client, False), now=now)
