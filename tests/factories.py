"""Test data made through the real management API, so tests exercise what operators do."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx

REDIRECT_URI = "https://client.example.org/cb"
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


def par_params(client: ClientHandle, **overrides: str | None) -> dict[str, str]:
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
