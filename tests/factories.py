"""Test data made through the real management API, so tests exercise what operators do."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx
from joserfc import jwt
from pydantic import BaseModel

from app.core.client_assertion import CLIENT_ASSERTION_TYPE
from app.core.model import ClientRecord

REDIRECT_URI = "https://client.example.org/cb"
# The authorization server's own endpoints: without them a service publishes no RFC 8414 metadata.
AUTHORIZATION_ENDPOINT = "https://as.example.org/authorize"
TOKEN_ENDPOINT = "https://as.example.org/token"
# RFC 7636 Appendix B.
CODE_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CODE_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@dataclass
class ServiceHandle:
    id: int
    token: str
    body: dict[str, Any]

    @property
    def par_path(self) -> str:
        return f"/services/{self.id}/par"

    @property
    def issuer(self) -> str:
        return str(self.body["issuer"])

    @property
    def par_url(self) -> str:
        return str(self.body["pushedAuthReqEndpoint"])

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class ClientHandle:
    id: int
    secret: str | None
    body: dict[str, Any]

    def basic(self, secret: str | None = None) -> dict[str, str]:
        """RFC 6749 §2.3.1: form-encode id and secret, then base64."""
        raw = f"{quote_plus(str(self.id))}:{quote_plus(secret if secret is not None else self.secret or '')}"
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


class Factory:
    def __init__(self, http: httpx.AsyncClient, *, admin_token: str) -> None:
        self.http = http
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    async def service(self, **fields: Any) -> ServiceHandle:
        body = {
            "serviceName": "test service",
            "authorizationEndpoint": AUTHORIZATION_ENDPOINT,
            "tokenEndpoint": TOKEN_ENDPOINT,
            "supportedScopes": [{"name": "openid"}, {"name": "profile"}, {"name": "email"}, {"name": "payments"}],
        }
        body.update(fields)
        response = await self.http.post("/api/service/create", json=body, headers=self.admin)
        assert response.status_code == 200, response.text
        data = response.json()
        return ServiceHandle(id=data["apiKey"], token=data["serviceAccessToken"], body=data)

    async def client(self, service: ServiceHandle, **fields: Any) -> ClientHandle:
        body: dict[str, Any] = {"clientName": "test client", "redirectUris": [REDIRECT_URI]}
        body.update(fields)
        response = await self.http.post(f"/api/{service.id}/client/create", json=body, headers=service.bearer)
        assert response.status_code == 200, response.text
        data = response.json()
        return ClientHandle(id=data["clientId"], secret=data.get("clientSecret"), body=data)


def par_params(client: ClientHandle | ClientRecord, **overrides: str | None) -> dict[str, str]:
    """A valid authorization request for ``client``; ``None`` removes a parameter."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": str(client.id),
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile",
        "state": "af0ifjsldkj",
        "code_challenge": CODE_CHALLENGE,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


async def post_par(
    http: httpx.AsyncClient, service: ServiceHandle, params: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST ``params`` to the service's RFC 9126 endpoint exactly as given."""
    return await http.post(service.par_path, data=params, headers=headers)


async def push(
    http: httpx.AsyncClient,
    service: ServiceHandle,
    client: ClientHandle,
    credentials: dict[str, str] | None = None,
    *,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
    **overrides: str | None,
) -> httpx.Response:
    """An RFC 9126 push of ``client``'s usual request (:func:`par_params` with ``overrides``).

    ``credentials`` (``client_secret``, a client assertion; ``{}`` for none) go in the body, and then no
    Authorization header is added; without them the client uses client_secret_basic with ``secret``, by
    default its own. ``headers`` are sent too."""
    params = par_params(client, **overrides) | (credentials or {})
    authorization = client.basic(secret) if credentials is None else {}
    return await post_par(http, service, params, authorization | (headers or {}))


def assert_result_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    """Authlete's ``ResultError`` as JSON with Cache-Control: no-store: exactly ``resultCode`` ("A" and six
    digits; ``code`` when given) and a ``resultMessage`` that starts with "[<resultCode>] "."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, str] = response.json()
    assert set(body) == {"resultCode", "resultMessage"}, body
    assert re.fullmatch(r"A\d{6}", body["resultCode"]), body
    assert body["resultMessage"].startswith(f"[{body['resultCode']}] "), body
    if code is not None:
        assert body["resultCode"] == code, body
    return body


def public_jwks(*keys: Any) -> str:
    """A client's ``jwks`` registration value (a JSON string) with the public halves of ``keys``."""
    return json.dumps({"keys": [key.as_dict(private=False) for key in keys]})


def client_assertion(
    client: ClientHandle, key: Any, alg: str, *, aud: Any, jti: str | None = None, **claims: Any
) -> dict[str, str]:
    """``client_assertion`` form parameters (RFC 7523 §2.2) for ``client``, valid for 60 s."""
    now = int(time.time())
    body = {
        "iss": str(client.id),
        "sub": str(client.id),
        "aud": aud,
        "jti": jti or f"j-{time.monotonic_ns()}",
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    header = {"alg": alg, **({"kid": key.kid} if getattr(key, "kid", None) else {})}
    return {
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": jwt.encode(header, body, key, algorithms=[alg]),
    }


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A JWT with ``alg: none`` (RFC 7519 §6), which no verifier of ours may accept."""

    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'none'})}.{segment(claims)}."


def dpop_proof(
    key: Any,
    *,
    htu: str,
    htm: str = "POST",
    alg: str = "ES256",
    nonce: str | None = None,
    iat: int | None = None,
    typ: str = "dpop+jwt",
) -> str:
    """A DPoP proof (RFC 9449 §4.2) signed with ``key``, carrying its public JWK."""
    claims: dict[str, Any] = {
        "jti": f"p-{time.monotonic_ns()}",
        "htm": htm,
        "htu": htu,
        "iat": iat if iat is not None else int(time.time()),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return jwt.encode({"typ": typ, "alg": alg, "jwk": key.as_dict(private=False)}, claims, key, algorithms=[alg])


def request_object(
    client: ClientHandle, key: Any, *, aud: str, alg: str = "ES256", lifetime: int = 300, **parameters: Any
) -> str:
    """A signed request object (RFC 9101 §4) carrying ``parameters``, as a client pushes it."""
    now = int(time.time())
    claims = {
        "iss": str(client.id),
        "aud": aud,
        "client_id": str(client.id),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": f"r-{time.monotonic_ns()}",
        **parameters,
    }
    header = {"alg": alg, "typ": "oauth-authz-req+jwt", **({"kid": key.kid} if getattr(key, "kid", None) else {})}
    return jwt.encode(header, claims, key, algorithms=[alg])


def assert_shaped_as(answer: dict[str, Any], model: type[BaseModel]) -> None:
    """``answer`` has only fields of ``model`` (by their JSON names), in the model's order: what
    ``model_dump(by_alias=True, exclude_none=True)`` would give for its values."""
    names = [field.alias or name for name, field in model.model_fields.items()]
    assert list(answer) == [name for name in names if name in answer], (list(answer), names)
    assert None not in answer.values()
