"""Authorization server metadata (RFC 8414) and OpenID discovery for each service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import IdPath, StateDep
from app.api.schemas import OAUTH_ERRORS
from app.core import jose
from app.core.errors import ApiNotFound
from app.core.model import ClientAuthMethod, GrantType, ServiceRecord
from app.core.urls import SERVICE_PATH
from app.db.repositories import ServiceRepository

router = APIRouter(tags=["Metadata"], responses=OAUTH_ERRORS)
METADATA_CACHE = {"Cache-Control": "public, max-age=60"}


def authorization_server_metadata(
    service: ServiceRecord, *, authorization_endpoint: str | None, token_endpoint: str | None, grant_types: list[str]
) -> dict[str, Any]:
    """RFC 8414 §2 fields, plus RFC 9126 §5 for PAR."""
    metadata: dict[str, Any] = {
        "issuer": service.issuer,
        "authorization_endpoint": authorization_endpoint,
        "token_endpoint": token_endpoint,
        "pushed_authorization_request_endpoint": service.pushed_auth_req_endpoint,
        "require_pushed_authorization_requests": service.par_required,
        "scopes_supported": sorted(service.scope_names) or None,
        "response_types_supported": sorted(rt.value for rt in service.supported_response_types),
        "grant_types_supported": grant_types or None,
        "token_endpoint_auth_methods_supported": sorted(m.value for m in service.supported_token_auth_methods),
        # META-04: needed when a *_jwt method is supported, and never "none".
        "token_endpoint_auth_signing_alg_values_supported": _signing_algorithms(service),
        "code_challenge_methods_supported": ["S256"] if service.pkce_s256_required else ["S256", "plain"],
        # RFC 9101 (JAR) at the PAR endpoint; RFC 9449 (DPoP); RFC 9396 (RAR).
        "request_parameter_supported": True,
        "request_object_signing_alg_values_supported": list(jose.ASYMMETRIC_ALGORITHMS),
        "require_signed_request_object": service.request_object_required,
        "dpop_signing_alg_values_supported": list(jose.ASYMMETRIC_ALGORITHMS),
        "authorization_details_types_supported": sorted(service.supported_authorization_details_types) or None,
        # RFC 9207: error redirects built by the resolve API carry `iss`.
        "authorization_response_iss_parameter_supported": True,
    }
    # RFC 8414 §3.2: "Claims with zero elements MUST be omitted from the response."
    return {key: value for key, value in metadata.items() if value is not None and value != []}


def unpublishable(
    service: ServiceRecord, *, authorization_endpoint: str | None, token_endpoint: str | None, grant_types: list[str]
) -> str | None:
    """Why the service's metadata would not be what RFC 8414 §2 asks for (META-11), or None. Every service serves
    the authorization endpoint's requests (pushed ones), so "authorization_endpoint" is REQUIRED;
    "token_endpoint" is REQUIRED "unless only the implicit grant type is supported";
    "response_types_supported" is REQUIRED, and an empty list must be omitted (§3.2); so must an empty
    "token_endpoint_auth_methods_supported", whose absence means client_secret_basic. The document is
    then not served (404) rather than served invalid or wrong: clients would fail on it, or guess."""
    missing = []
    if authorization_endpoint is None:
        missing.append("authorizationEndpoint")
    if token_endpoint is None and set(grant_types) != {GrantType.IMPLICIT.value}:
        missing.append("tokenEndpoint")
    if not service.supported_response_types:
        missing.append("supportedResponseTypes")
    if not service.supported_token_auth_methods:
        missing.append("supportedTokenAuthMethods")
    if not missing:
        return None
    return f"the service publishes no metadata until it has {' and '.join(missing)} (RFC 8414 section 2)"


async def _metadata(service_id: int, state: StateDep) -> JSONResponse:
    async with state.sessions() as session:
        row = await ServiceRepository(session).get_or_none(service_id)
    if row is None:
        raise ApiNotFound(f"service {service_id} does not exist")
    service = state.service_record(row)
    endpoints = {"authorization_endpoint": row.authorization_endpoint, "token_endpoint": row.token_endpoint}
    grant_types = [_grant_value(name) for name in row.supported_grant_types]
    problem = unpublishable(service, **endpoints, grant_types=grant_types)
    if problem is not None:
        raise ApiNotFound(problem)
    body = authorization_server_metadata(service, **endpoints, grant_types=grant_types)
    return JSONResponse(body, headers=METADATA_CACHE)


def _grant_value(name: str) -> str:
    return GrantType[name].value


@router.get("/.well-known/oauth-authorization-server" + SERVICE_PATH, summary="RFC 8414 metadata (path insertion)")
async def oauth_metadata(service_id: IdPath, state: StateDep) -> JSONResponse:
    """RFC 8414 §3: the well-known URI suffix is inserted between the host and the issuer's path."""
    return await _metadata(service_id, state)


@router.get(SERVICE_PATH + "/.well-known/openid-configuration", summary="OpenID Connect Discovery 1.0 §4")
async def openid_configuration(service_id: IdPath, state: StateDep) -> JSONResponse:
    return await _metadata(service_id, state)


def _signing_algorithms(service: ServiceRecord) -> list[str] | None:
    algorithms: list[str] = []
    if ClientAuthMethod.PRIVATE_KEY_JWT in service.supported_token_auth_methods:
        algorithms += jose.ASYMMETRIC_ALGORITHMS
    if ClientAuthMethod.CLIENT_SECRET_JWT in service.supported_token_auth_methods:
        algorithms += jose.SYMMETRIC_ALGORITHMS
    return algorithms or None
