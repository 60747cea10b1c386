"""The OpenAPI document's security schemes, which FastAPI cannot derive: credentials are read by the
endpoints themselves (the bearer token of every /api call, ``app.api.deps``; the client's credentials at
the RFC 9126 endpoint, ``app.api.par``), not by FastAPI security dependencies. Each operation names its
requirement in its ``openapi_extra`` (the management routes by their route class,
``app.api.management.AuthenticatedJsonRoute``).
"""

from __future__ import annotations

from typing import Any

SERVICE_ACCESS_TOKEN = "serviceAccessToken"  # noqa: S105 (the scheme's name)
ADMIN_TOKEN = "adminToken"  # noqa: S105
CLIENT_SECRET_BASIC = "clientSecretBasic"  # noqa: S105
MUTUAL_TLS = "mutualTLS"
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    SERVICE_ACCESS_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "A service access token: acts on its own service only. Creating a service answers with "
        "its first; the admin token issues more (/api/{service_id}/service/token/create).",
    },
    ADMIN_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token (PAR_ADMIN_TOKEN): acts on every service, and alone creates, lists and "
        "deletes services and issues and revokes their access tokens.",
    },
    CLIENT_SECRET_BASIC: {
        "type": "http",
        "scheme": "basic",
        "description": "client_secret_basic (RFC 6749 §2.3.1): the client id and secret, each form-encoded, "
        "as HTTP Basic credentials.",
    },
    MUTUAL_TLS: {
        "type": "mutualTLS",
        "description": "tls_client_auth and self_signed_tls_client_auth (RFC 8705 §2): the client certificate, "
        "verified by the TLS-terminating proxy and passed in the header PAR_CLIENT_CERTIFICATE_HEADER names "
        "(read only when PAR_TRUST_CLIENT_CERTIFICATE_HEADER is set).",
    },
}
# OpenAPI 3.1 §4.8.30: the requirements of a list are alternatives; an empty one means none is needed.
ADMIN_ONLY: list[dict[str, list[str]]] = [{ADMIN_TOKEN: []}]
SERVICE_OR_ADMIN: list[dict[str, list[str]]] = [{SERVICE_ACCESS_TOKEN: []}, {ADMIN_TOKEN: []}]
# The empty requirement: client_secret_post, private_key_jwt and client_secret_jwt carry their
# credentials in the form body (documented there), and a public client ("none") has none.
CLIENT_AUTHENTICATION: list[dict[str, list[str]]] = [{CLIENT_SECRET_BASIC: []}, {MUTUAL_TLS: []}, {}]


def with_security_schemes(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's) with the security schemes its operations name, in place."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    return document
