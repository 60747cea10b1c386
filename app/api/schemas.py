"""Authlete-shaped JSON of the backend API (push, resolve, consume) and of every /api error; the
management API's own models are ``app.management.schemas``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.management.schemas import CamelModel
from app.management.schemas import epoch_millis as epoch_millis  # app.api.authorization renders expiresAt


def without_none(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer built in the order of its model's fields, without its unset ones: what
    ``model.model_dump(by_alias=True, exclude_none=True)`` gives, without building the model first."""
    return {name: value for name, value in answer.items() if value is not None}


def request_body(model: type[BaseModel], *media_types: str) -> dict[str, Any]:
    """``openapi_extra`` for an endpoint that reads its body itself (``app.api.bodies``): ``model`` as
    the body of each of ``media_types``, as FastAPI documents a declared body parameter."""
    schema = model.model_json_schema(by_alias=True)
    return {
        "requestBody": {"required": True, "content": {media_type: {"schema": schema} for media_type in media_types}}
    }


class ResultErrorOut(BaseModel):
    """Authlete's ResultError: every /api error."""

    resultCode: str = Field(pattern=r"^A[0-9]{6}$")  # noqa: N815 (Authlete's JSON name)
    resultMessage: str  # noqa: N815


class OAuthErrorOut(BaseModel):
    """RFC 6749 §5.2: every error outside /api."""

    model_config = ConfigDict(extra="forbid")
    error: str
    error_description: str


API_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ResultErrorOut, "description": "ResultError"},
    "5XX": {"model": ResultErrorOut, "description": "ResultError"},
}
OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": OAuthErrorOut, "description": "RFC 6749 §5.2 error"},
    "5XX": {"model": OAuthErrorOut, "description": "RFC 6749 §5.2 error"},
}


class PushedAuthReqIn(CamelModel):
    """Authlete ``PushedAuthReqRequest``. ``clientCertificatePath`` is accepted and not checked (the TLS
    terminator validates chains); ``oauthClientAttestation`` and ``oauthClientAttestationPop`` are read
    only to refuse them (``app.api.backend``)."""

    parameters: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    client_certificate: str | None = None
    client_certificate_path: list[str] | str | None = None
    dpop: str | None = None
    htm: str | None = None
    htu: str | None = None
    dpop_nonce_required: bool | None = None
    oauth_client_attestation: str | None = None
    oauth_client_attestation_pop: str | None = None


class PushedAuthReqOut(CamelModel):
    result_code: str
    result_message: str
    action: str
    response_content: str
    request_uri: str | None = None
    client_auth_method: str | None = None
    dpop_nonce: str | None = None


class ResolveIn(CamelModel):
    parameters: str | None = None  # the authorization endpoint's query string or form body


class ConsumeIn(CamelModel):
    client_id: str | None = None
    request_uri: str | None = None


class AuthorizationOut(CamelModel):
    """The answer of resolve and consume. ``responseContent`` is the JSON error to show for BAD_REQUEST
    and the URL to redirect to for LOCATION."""

    result_code: str
    result_message: str
    action: str
    response_content: str | None = None
    client_id: int | None = None
    client_id_alias: str | None = None
    request_uri: str | None = None
    parameters: str | None = None
    request: dict[str, Any] | None = None
    expires_at: int | None = None
