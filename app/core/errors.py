"""The one error hierarchy. Each error carries its wire code; ``app.api.errors`` renders them.

RFC 6749 §5.2: "Values for the "error_description" parameter MUST NOT include characters outside the
set %x20-21 / %x23-5B / %x5D-7E."  Descriptions are cleaned to that set on construction.
"""

from __future__ import annotations

import re
from typing import ClassVar

from app.core import result_codes

_DISALLOWED_DESCRIPTION_CHARS = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
MAX_DESCRIPTION_LENGTH = 300


def clean_description(text: str) -> str:
    """Restrict to the RFC 6749 §5.2 character set and bound the length."""
    cleaned = _DISALLOWED_DESCRIPTION_CHARS.sub("?", text)
    return cleaned if len(cleaned) <= MAX_DESCRIPTION_LENGTH else cleaned[: MAX_DESCRIPTION_LENGTH - 3] + "..."


class ParServerError(Exception):
    """Base of every error the server turns into a response."""

    status_code: ClassVar[int] = 500
    default_result_code: ClassVar[str] = result_codes.PUSH_FAILED

    def __init__(self, description: str, *, result_code: str | None = None) -> None:
        self.description = clean_description(description)
        self.result_code = result_code or self.default_result_code
        super().__init__(self.description)

    @property
    def result_message(self) -> str:
        return f"[{self.result_code}] {self.description}"


class TemporarilyUnavailable(ParServerError):
    """The server cannot take this request now; it may be retried (RFC 9110 §15.6.4 503 Service Unavailable,
    with Retry-After). At the RFC endpoints ``temporarily_unavailable``, at /api a ``ResultError``."""

    status_code = 503
    default_result_code = result_codes.SERVER_ERROR


# --- OAuth errors: RFC 6749 §5.2 JSON at the RFC endpoints, `responseContent` at the backend API ----


class OAuthError(ParServerError):
    """An OAuth error response: ``{"error": ..., "error_description": ...}``."""

    error: ClassVar[str] = "invalid_request"
    status_code: ClassVar[int] = 400
    default_result_code: ClassVar[str] = result_codes.PUSH_INVALID_REQUEST

    def to_body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(OAuthError):
    error = "invalid_request"


class RequestTooLarge(OAuthError):
    """RFC 9126 §2.3: "the authorization server can use HTTP 413 Payload Too Large"."""

    error = "invalid_request"
    status_code = 413
    default_result_code = result_codes.PUSH_REQUEST_TOO_LARGE


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: "If the client attempted to authenticate via the "Authorization" request header
    field, the authorization server MUST respond with an HTTP 401 (Unauthorized) status code and
    include the "WWW-Authenticate" response header field"."""

    error = "invalid_client"
    status_code = 401
    default_result_code = result_codes.CLIENT_AUTHENTICATION_FAILED

    def __init__(self, description: str, *, result_code: str | None = None, used_authorization_header: bool) -> None:
        super().__init__(description, result_code=result_code)
        self.used_authorization_header = used_authorization_header


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    default_result_code = result_codes.PUSH_UNAUTHORIZED_CLIENT


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"
    default_result_code = result_codes.PUSH_UNSUPPORTED_RESPONSE_TYPE


class InvalidScope(OAuthError):
    error = "invalid_scope"
    default_result_code = result_codes.PUSH_INVALID_SCOPE


class InvalidRequestUri(OAuthError):
    """RFC 9126 §4 / RFC 9101 §7: "The "request_uri" in the authorization request returns an error or
    contains invalid data."""

    error = "invalid_request_uri"
    default_result_code = result_codes.INVALID_REQUEST_URI


class InvalidTarget(OAuthError):
    """RFC 8707 §2: "the "invalid_target" error code" for an invalid or unacceptable resource."""

    error = "invalid_target"
    default_result_code = result_codes.INVALID_TARGET


class InvalidAuthorizationDetails(OAuthError):
    """RFC 9396 §5: "invalid_authorization_details" for an unknown type, a missing or invalid field."""

    error = "invalid_authorization_details"
    default_result_code = result_codes.INVALID_AUTHORIZATION_DETAILS


class RequestNotSupported(OAuthError):
    """RFC 9101 §7: "The authorization server does not support use of the "request" parameter"."""

    error = "request_not_supported"
    default_result_code = result_codes.PUSH_REQUEST_NOT_SUPPORTED


class InvalidDpopProof(OAuthError):
    error = "invalid_dpop_proof"
    default_result_code = result_codes.INVALID_DPOP_PROOF


# --- API errors: the Authlete `ResultError` body ``{"resultCode", "resultMessage"}`` at /api ---------


class ApiError(ParServerError):
    """A failure of a backend or management API call itself (not of the OAuth request it carries)."""

    status_code = 400
    default_result_code = result_codes.API_CALL_FAILED


class ApiBadRequest(ApiError):
    status_code = 400
    default_result_code = result_codes.API_BAD_REQUEST


class ApiUnauthorized(ApiError):
    status_code = 401
    default_result_code = result_codes.API_UNAUTHORIZED


class ApiForbidden(ApiError):
    status_code = 403
    default_result_code = result_codes.SERVICE_ACCESS_FORBIDDEN


class ApiNotFound(ApiError):
    status_code = 404
    default_result_code = result_codes.API_NOT_FOUND


class ApiConflict(ApiError):
    status_code = 409
    default_result_code = result_codes.API_CONFLICT
