"""Rows to answers and given fields to column values, driven by tables rather than field-by-field copies.

Inbound, a field that is absent or null keeps its stored value (the SDKs send every field), and only the
fields that are named below are converted; every other field goes as it is to the column of its name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from pydantic import BaseModel

from app.core import mtls
from app.core.errors import ApiBadRequest
from app.core.model import AudiencePolicy, FapiMode, ServiceRecord
from app.core.registration import validate_endpoint_url, validate_issuer, validate_jwks, validate_redirect_uri
from app.db.models import Client, Service
from app.management.schemas import ClientIn, ClientOut, ServiceIn, ServiceOut

Convert = Callable[[Any], Any]


def given_fields(body: BaseModel, *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields the caller gave a value (not null), in the model's order, as parsed."""
    return {
        name: value
        for name in type(body).model_fields
        if name not in skip and (value := getattr(body, name)) is not None
    }


def column_values(row: Service | Client) -> dict[str, Any]:
    """The row's stored values by attribute name."""
    return {attribute.key: getattr(row, attribute.key) for attribute in row.__mapper__.column_attrs}


def cleared(value: str) -> str | None:
    """An empty string clears the field."""
    return value or None


def server_default(value: int) -> int | None:
    """0 is the server's default (the SDKs send 0 for a number they leave unset)."""
    return value or None


def names(members: list[Enum]) -> list[str]:
    """Enums are stored by their Authlete names."""
    return [member.name for member in members]


def endpoint(json_name: str) -> Convert:
    def convert(value: str) -> str | None:
        return validate_endpoint_url(json_name, value) if value else None

    return convert


# --- services -----------------------------------------------------------------------------------------

SERVICE_COLUMNS = {"service_name": "name"}
SERVICE_FIELDS: Mapping[str, Convert] = {
    "description": cleared,
    "issuer": lambda value: validate_issuer(value) if value else None,
    "authorization_endpoint": endpoint("authorizationEndpoint"),
    "token_endpoint": endpoint("tokenEndpoint"),
    "pushed_auth_req_endpoint": endpoint("pushedAuthReqEndpoint"),
    "pushed_auth_req_duration": server_default,
    "authorization_session_duration": server_default,
    "dpop_nonce_duration": server_default,
    "max_state_length": server_default,
    "max_nonce_length": server_default,
    "supported_authorization_details_types": lambda types: list(dict.fromkeys(types)),
    "fapi_modes": names,
    "supported_scopes": lambda scopes: [scope.model_dump(by_alias=True) for scope in scopes],
    "supported_response_types": names,
    "supported_grant_types": names,
    "supported_token_auth_methods": names,
}
# Two names of one column, resolved together (``audience_policy``).
SERVICE_POLICY_FIELDS = frozenset({"client_assertion_audience_policy", "client_assertion_aud_restricted_to_issuer"})
# What a service answers is what is in force: the server's defaults filled in, the FAPI 2.0 profile applied.
SERVICE_EFFECTIVE_FIELDS = (
    "issuer",
    "pushed_auth_req_endpoint",
    "pushed_auth_req_duration",
    "authorization_session_duration",
    "dpop_nonce_duration",
    "max_state_length",
    "max_nonce_length",
)


def service_changes(body: ServiceIn, *, derived: Mapping[str, str], stored_fapi2: bool = False) -> dict[str, Any]:
    """The column values ``body`` gives. A read-modify-write that sends back a ``derived`` default keeps it
    derived, so it goes on following PAR_PUBLIC_BASE_URL."""
    changes = {
        SERVICE_COLUMNS.get(field, field): SERVICE_FIELDS.get(field, _same)(value)
        for field, value in given_fields(body, skip=SERVICE_POLICY_FIELDS).items()
    }
    for column, default in derived.items():
        if changes.get(column) == default:
            changes[column] = None
    policy = audience_policy(
        body.client_assertion_audience_policy,
        body.client_assertion_aud_restricted_to_issuer,
        fapi2=stored_fapi2 if body.fapi_modes is None else FapiMode.FAPI2_SECURITY in body.fapi_modes,
    )
    if policy is not None:
        changes["client_assertion_audience_policy"] = policy
    return changes


def audience_policy(policy: str | None, restricted_to_issuer: bool | None, *, fapi2: bool = False) -> str | None:
    """``clientAssertionAudiencePolicy`` and Authlete's name for the same choice (true is FAPI2, false
    RFC9126), which must agree when both are given. Under FAPI 2.0 the audience is the issuer whatever the
    policy, and a service's answer says ``true`` beside its stored policy: sent back, that pair is what the
    service already is, and the stored policy is kept."""
    if restricted_to_issuer is None:
        return policy
    implied = AudiencePolicy.FAPI2 if restricted_to_issuer else AudiencePolicy.RFC9126
    if fapi2 and restricted_to_issuer and policy is not None:
        return policy
    if policy is not None and policy != implied.value:
        raise ApiBadRequest(
            f"clientAssertionAudRestrictedToIssuer={str(restricted_to_issuer).lower()} contradicts "
            f"clientAssertionAudiencePolicy={policy}"
        )
    return implied.value


def service_out(row: Service, record: ServiceRecord) -> ServiceOut:
    return ServiceOut.model_validate(
        {
            **column_values(row),
            "api_key": row.id,
            "service_name": row.name,
            **{field: getattr(record, field) for field in SERVICE_EFFECTIVE_FIELDS},
            "client_assertion_aud_restricted_to_issuer": record.client_assertion_audience_policy
            is AudiencePolicy.FAPI2,
        }
    )


# --- clients ------------------------------------------------------------------------------------------

CLIENT_FIELDS: Mapping[str, Convert] = {
    "client_name": cleared,
    "description": cleared,
    "redirect_uris": lambda uris: [validate_redirect_uri(uri) for uri in uris],
    "response_types": names,
    "grant_types": names,
    "jwks": lambda text: validate_jwks(text) if text else None,
    "jwks_uri": endpoint("jwksUri"),
    "token_auth_sign_alg": cleared,
    "request_sign_alg": cleared,
    **dict.fromkeys(mtls.TLS_CLIENT_AUTH_METADATA, cleared),
}
# Resolved by ``app.management.clients`` with what they depend on (the service, the other clients).
CLIENT_CHECKED_FIELDS = frozenset(
    {"client_id_alias", "client_type", "token_auth_method", "extension", "client_secret", "client_secret_hash"}
)


def client_changes(body: ClientIn) -> dict[str, Any]:
    """The column values ``body`` gives, but for ``CLIENT_CHECKED_FIELDS``."""
    return {
        field: CLIENT_FIELDS.get(field, _same)(value)
        for field, value in given_fields(body, skip=CLIENT_CHECKED_FIELDS).items()
    }


def client_out(row: Client, *, secret: str | None = None) -> ClientOut:
    return ClientOut.model_validate(
        {
            **column_values(row),
            "client_id": row.id,
            "client_id_alias_enabled": row.client_id_alias is not None,
            "client_secret": secret,
            "extension": {
                "requestable_scopes_enabled": row.requestable_scopes is not None,
                "requestable_scopes": list(row.requestable_scopes or []),
            },
        }
    )


def _same(value: Any) -> Any:
    return value
