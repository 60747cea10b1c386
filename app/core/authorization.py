"""The authorization endpoint's half of PAR (RFC 9126 §4): resolving and consuming a ``request_uri``.

An authorization server hands us its authorization endpoint's parameters. For ``client_id`` plus a
``request_uri`` we answer with the pushed request, after checking it belongs to that client; a plain
request is validated like a push. Resolving is repeatable until the request is consumed or its
window closes (page reloads; FAPI 2.0 §5.3.2.2 Note 3); consuming is atomic and happens once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from app.core import result_codes
from app.core.authorization_request import validate_authorization_request, validate_redirect_uri
from app.core.errors import InvalidRequest, InvalidRequestUri, OAuthError
from app.core.model import ClientRecord, PushedRequestRecord, ServiceRecord
from app.core.params import ParameterBounds, RequestParameters, parse_parameters
from app.core.ports import ClientDirectory, PushedRequestStore
from app.core.secrets import REQUEST_URI_PREFIX, reference_hash

# One description for unknown, expired, consumed and other-client request URIs: nothing reveals which.
UNUSABLE_REQUEST_URI = "the request_uri is unknown, expired, already used, or not issued to this client"


class AuthorizationAction(StrEnum):
    """What the authorization endpoint should do (the subset of Authlete's actions that applies)."""

    OK = "OK"  # go on with the request (authenticate the user, ask consent)
    BAD_REQUEST = "BAD_REQUEST"  # show `responseContent` (JSON) to the user: no safe redirect exists
    LOCATION = "LOCATION"  # redirect the user agent to `responseContent` (303/302)
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


@dataclass(frozen=True, slots=True)
class AuthorizationOutcome:
    action: AuthorizationAction
    result_code: str
    result_message: str
    response_content: str | None = None  # JSON error for BAD_REQUEST, the redirect URL for LOCATION
    client: ClientRecord | None = None
    request_uri: str | None = None
    parameters: str | None = None
    request: dict[str, Any] | None = None
    expires_at: datetime | None = None
    error: str | None = None  # the OAuth error code of BAD_REQUEST and LOCATION answers

    @classmethod
    def pushed(
        cls,
        result_code: str,
        verb: str,
        record: PushedRequestRecord,
        client: ClientRecord,
        request_uri: str,
        expires_at: datetime,
    ) -> AuthorizationOutcome:
        """OK with a stored request."""
        return cls(
            AuthorizationAction.OK,
            result_code,
            f"[{result_code}] The request_uri of client ({client.id}) was {verb}.",
            client=client,
            request_uri=request_uri,
            parameters=record.parameters,
            request=record.request,
            expires_at=expires_at,
        )

    @classmethod
    def bad_request(cls, error: OAuthError) -> AuthorizationOutcome:
        return cls(
            AuthorizationAction.BAD_REQUEST,
            error.result_code,
            error.result_message,
            response_content=json.dumps(error.to_body(), separators=(",", ":")),
            error=error.error,
        )


async def resolve(
    parameters: str,
    *,
    service: ServiceRecord,
    clients: ClientDirectory,
    pushed_requests: PushedRequestStore,
    limits: ParameterBounds,
    now: datetime,
) -> AuthorizationOutcome:
    """Turn the authorization endpoint's parameters into the request to process: the client read from
    ``clients``, a ``request_uri``'s request from ``pushed_requests``."""
    try:
        params = parse_parameters(parameters, limits)
    except OAuthError as error:
        return AuthorizationOutcome.bad_request(error)
    client_identifier = params.get("client_id")
    if client_identifier is None:
        return AuthorizationOutcome.bad_request(InvalidRequest("the client_id parameter is required"))
    client = await clients.get_client(service.id, client_identifier)
    request_uri = params.get("request_uri")
    if request_uri is not None:
        if "request" in params:
            return AuthorizationOutcome.bad_request(
                InvalidRequest(
                    "request and request_uri must not both be present",
                    result_code=result_codes.REQUEST_WITH_REQUEST_URI,
                )
            )
        # RFC 9126 §4: the other parameters are ignored in favour of the pushed ones.
        return await _resolve_pushed(request_uri, client, service=service, pushed_requests=pushed_requests, now=now)
    return _resolve_plain(params, client, service=service)


async def consume(
    client_identifier: str,
    request_uri: str,
    *,
    service: ServiceRecord,
    clients: ClientDirectory,
    pushed_requests: PushedRequestStore,
    now: datetime,
) -> AuthorizationOutcome:
    """Consume a pushed request once, atomically (RFC 9126 §7.3: "one-time use").

    The client binding is part of the atomic statement, so a wrong client changes nothing.
    """
    client = await clients.get_client(service.id, client_identifier)
    reference = _reference(request_uri)
    record = None
    if client is not None and reference is not None:
        record = await pushed_requests.consume(service.id, reference_hash(reference), client_id=client.id, now=now)
    if record is None or client is None:
        return AuthorizationOutcome.bad_request(InvalidRequestUri(UNUSABLE_REQUEST_URI))
    return AuthorizationOutcome.pushed(
        result_codes.REQUEST_URI_CONSUMED, "consumed", record, client, request_uri, record.expires_at
    )


async def _resolve_pushed(
    request_uri: str,
    client: ClientRecord | None,
    *,
    service: ServiceRecord,
    pushed_requests: PushedRequestStore,
    now: datetime,
) -> AuthorizationOutcome:
    reference = _reference(request_uri)
    if reference is None:
        # PAR-35: a PAR request_uri is never fetched; anything else is not one of ours.
        return AuthorizationOutcome.bad_request(
            InvalidRequestUri(
                "the request_uri was not issued by this server's pushed authorization request endpoint",
                result_code=result_codes.REQUEST_URI_NOT_PUSHED,
            )
        )
    record = await pushed_requests.get(service.id, reference_hash(reference))
    # RFC 9126 §2.2: "The request_uri MUST be bound to the client that posted the authorization request."
    # Checked before anything changes: another client's attempt leaves the request usable by its own.
    if (
        record is None
        or record.consumed_at is not None
        or record.expires_at <= now
        or client is None
        or record.client_id != client.id
    ):
        return AuthorizationOutcome.bad_request(InvalidRequestUri(UNUSABLE_REQUEST_URI))
    stored = parse_parameters(record.parameters, _UNLIMITED)
    # PAR-33: policy may have changed since the push (scopes, redirect URIs, PKCE): check it again.
    checked = _validate_or_redirect(
        stored, client, service=service, pushed=True, signed=bool(record.request.get("signedRequestObject"))
    )
    if isinstance(checked, AuthorizationOutcome):
        return checked
    expires_at = record.expires_at
    if service.consume_request_uri_on_resolve:
        consumed = await pushed_requests.consume(service.id, record.reference_hash, client_id=client.id, now=now)
        if consumed is None:
            return AuthorizationOutcome.bad_request(InvalidRequestUri(UNUSABLE_REQUEST_URI))
        expires_at = now
    elif record.resolved_at is None:
        # The first resolve opens the authorization session: the request now outlives expires_in for as
        # long as a login may take (NOTE-02 in docs/requirements.md, with the servers that did otherwise).
        expires_at = max(record.expires_at, now + timedelta(seconds=service.authorization_session_duration))
        await pushed_requests.mark_resolved(service.id, record.reference_hash, now=now, expires_at=expires_at)
    return AuthorizationOutcome.pushed(
        result_codes.REQUEST_URI_RESOLVED, "resolved", record, client, request_uri, expires_at
    )


def _resolve_plain(
    params: RequestParameters, client: ClientRecord | None, *, service: ServiceRecord
) -> AuthorizationOutcome:
    if client is None:
        # RFC 6749 §4.1.2.1: with an invalid client identifier the server "MUST NOT automatically redirect".
        return AuthorizationOutcome.bad_request(InvalidRequest("the client_id does not name a client of this service"))
    checked = _validate_or_redirect(params, client, service=service, pushed=False)
    if isinstance(checked, AuthorizationOutcome):
        return checked
    return AuthorizationOutcome(
        AuthorizationAction.OK,
        result_codes.REQUEST_URI_RESOLVED,
        f"[{result_codes.REQUEST_URI_RESOLVED}] The authorization request of client ({client.id}) is valid.",
        client=client,
        parameters=params.encode(),
        request=checked,
    )


def _validate_or_redirect(
    params: RequestParameters, client: ClientRecord, *, service: ServiceRecord, pushed: bool, signed: bool = False
) -> dict[str, Any] | AuthorizationOutcome:
    """The normalised request when valid; otherwise a redirect to the client when that is safe, else an
    error page.

    RFC 6749 §4.1.2.1: errors other than a bad redirection URI or client identifier are reported by
    redirecting to the client's redirection URI.
    """
    try:
        redirect_uri = validate_redirect_uri(
            params.get("redirect_uri"),
            client=client,
            allow_unregistered=pushed and service.allow_unregistered_pushed_redirect_uris,
        )
    except OAuthError as error:
        return AuthorizationOutcome.bad_request(error)
    try:
        if not pushed and (service.par_required or client.par_required):
            # RFC 9126 §4 / PAR-34: "the authorization server ... MUST reject" requests not pushed.
            code = result_codes.PAR_REQUIRED_BY_SERVICE if service.par_required else result_codes.PAR_REQUIRED_BY_CLIENT
            raise InvalidRequest("this client must use pushed authorization requests (request_uri)", result_code=code)
        return validate_authorization_request(params, service=service, client=client, pushed=pushed, signed=signed)
    except OAuthError as error:
        return AuthorizationOutcome(
            AuthorizationAction.LOCATION,
            error.result_code,
            error.result_message,
            response_content=error_redirect_url(redirect_uri, error, params, issuer=service.issuer),
            client=client,
            error=error.error,
        )


def error_redirect_url(redirect_uri: str, error: OAuthError, params: RequestParameters, *, issuer: str) -> str:
    """The authorization error response (RFC 6749 §4.1.2.1) with ``iss`` (RFC 9207 §2), in the query, or
    in the fragment for response types that return tokens from the authorization endpoint."""
    values = {"error": error.error, "error_description": error.description}
    state = params.get("state")
    if state is not None:
        values["state"] = state
    values["iss"] = issuer
    response_type_words = set((params.get("response_type") or "").split(" "))
    in_fragment = params.get("response_mode") == "fragment" or bool(response_type_words & {"token", "id_token"})
    parts = urlsplit(redirect_uri)
    if in_fragment:
        return urlunsplit(parts._replace(fragment=urlencode(values)))
    query = f"{parts.query}&{urlencode(values)}" if parts.query else urlencode(values)
    return urlunsplit(parts._replace(query=query))


def _reference(request_uri: str) -> str | None:
    if not request_uri.startswith(REQUEST_URI_PREFIX):
        return None
    return request_uri[len(REQUEST_URI_PREFIX) :] or None


# Stored parameters passed the limits when pushed; re-reading them applies none.
_UNLIMITED = ParameterBounds(max_parameters=10**6, max_parameter_bytes=10**9, max_total_bytes=10**9)
