"""An authorization endpoint in front of par-server: resolve, approve, consume, redirect with a code.

It serves ``GET /authorize`` for one par-server service, over par-server's backend API (service access
token): ``resolve`` turns the query string into the validated request (RFC 9126 §4: for ``client_id`` +
``request_uri`` the pushed one), a fixed test user approves it, ``consume`` uses the ``request_uri`` up
exactly once (RFC 9126 §7.3), and the browser goes back to the client with ``code``, ``state`` and ``iss``
(RFC 6749 §4.1.2, RFC 9207 §2). Login, consent and the token endpoint are left out: a real server puts
its login between resolve and consume, and stores the code with the consumed request for its token
endpoint.

Run it with ``uvicorn --factory examples.authorization_endpoint.app:from_env`` (README.md here).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

TEST_USER = "alice"  # approves every request: this example has no login page
NO_STORE = {"Cache-Control": "no-store"}  # codes and errors are for one visit only


@dataclass(frozen=True)
class Grant:
    """What an authorization code stands for."""

    user: str
    client_id: int
    request: Mapping[str, Any]


def create_app(
    par_server_url: str,
    service_id: int,
    service_token: str,
    *,
    issuer: str | None = None,
    consume_on_resolve: bool = False,
) -> FastAPI:
    """The authorization endpoint of service ``service_id``; ``issuer`` defaults to the one par-server
    derives for a service without its own (``<par_server_url>/services/<service_id>``).
    ``consume_on_resolve`` says that the service sets ``consumeRequestUriOnResolve``: resolve has then
    used the request up already, and there is nothing left to consume."""
    par_server_url = par_server_url.rstrip("/")
    issuer = issuer or f"{par_server_url}/services/{service_id}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            base_url=f"{par_server_url}/api/{service_id}/pushed_auth_req",
            headers={"Authorization": f"Bearer {service_token}"},
            timeout=10.0,
        ) as par:
            app.state.par = par
            yield

    app = FastAPI(title="Authorization endpoint example", lifespan=lifespan)
    # The codes issued, for a token endpoint (not part of this example). In memory here; a real server
    # keeps them in its database, and forgets them when they expire or are redeemed.
    codes: dict[str, Grant] = {}
    app.state.codes = codes

    @app.get("/authorize")
    async def authorize(request: Request) -> Response:
        par: httpx.AsyncClient = request.app.state.par
        # The query string goes to par-server as it came: it parses and validates it.
        resolved = await _call(par, "/resolve", {"parameters": request.url.query})
        if resolved is None:
            return _error_page(502, "server_error", "the authorization server is unavailable")
        if resolved["action"] == "LOCATION":
            # par-server trusts the redirect URI and built the error response, state and iss included.
            return RedirectResponse(resolved["responseContent"], status_code=303, headers=NO_STORE)
        if resolved["action"] != "OK":
            # RFC 6749 §4.1.2.1: a bad client_id, redirect_uri or request_uri "MUST NOT automatically
            # redirect the user-agent to the invalid redirection URI".
            error = json.loads(resolved["responseContent"])
            return _error_page(400, error["error"], error.get("error_description", ""))

        # From here on, the redirect URI is the client's own, checked by par-server: errors go back to it.
        request_data: dict[str, Any] = resolved["request"]
        redirect_uri: str = request_data["redirectUri"]
        state: str | None = request_data.get("state")
        if request_data["responseType"] != "code":
            # Errors of response types that return tokens from here travel in the fragment (RFC 6749 §4.2.2.1).
            error_values = _values(state, issuer, error="unsupported_response_type")
            return _redirect(redirect_uri, error_values, fragment=True)

        # A real server authenticates the user and asks for consent here; reloads re-resolve harmlessly.
        user = TEST_USER

        request_uri: str | None = resolved.get("requestUri")
        if request_uri is not None and not consume_on_resolve:
            # Used up just before the code is issued: a second use of the request_uri fails.
            consumed = await _call(par, "/consume", {"clientId": str(resolved["clientId"]), "requestUri": request_uri})
            if consumed is None:
                return _redirect(redirect_uri, _values(state, issuer, error="server_error"))
            if consumed["action"] != "OK":  # consumed elsewhere (another tab) or expired meanwhile
                error = json.loads(consumed["responseContent"])
                fields = {name: error[name] for name in ("error", "error_description") if name in error}
                return _redirect(redirect_uri, _values(state, issuer, **fields))
            request_data = consumed["request"]

        # RFC 6749 §4.1.2: a short-lived, single-use code, kept with what the token endpoint needs to
        # redeem it (the request's redirectUri, scopes, codeChallenge, dpopJkt, ...).
        code = secrets.token_urlsafe(32)
        codes[code] = Grant(user=user, client_id=resolved["clientId"], request=request_data)
        return _redirect(redirect_uri, _values(state, issuer, code=code))

    return app


def from_env() -> FastAPI:
    """The app configured by AUTHZ_PAR_SERVER_URL, AUTHZ_SERVICE_ID, AUTHZ_SERVICE_TOKEN and, optionally,
    AUTHZ_ISSUER and AUTHZ_CONSUME_ON_RESOLVE=1 (for uvicorn's ``--factory``)."""
    return create_app(
        os.environ["AUTHZ_PAR_SERVER_URL"],
        int(os.environ["AUTHZ_SERVICE_ID"]),
        os.environ["AUTHZ_SERVICE_TOKEN"],
        issuer=os.environ.get("AUTHZ_ISSUER") or None,
        consume_on_resolve=os.environ.get("AUTHZ_CONSUME_ON_RESOLVE") == "1",
    )


async def _call(par: httpx.AsyncClient, path: str, body: Mapping[str, str]) -> dict[str, Any] | None:
    """par-server's answer, or None when it could not give one (down, or refusing the service token)."""
    try:
        response = await par.post(path, json=body)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    answer: dict[str, Any] = response.json()
    return answer


def _values(state: str | None, issuer: str, **fields: str) -> dict[str, str]:
    """The response parameters: ``fields``, then ``state`` when the request had one (RFC 6749 §4.1.2)
    and ``iss`` (RFC 9207 §2)."""
    values = dict(fields)
    if state is not None:
        values["state"] = state
    values["iss"] = issuer
    return values


def _redirect(redirect_uri: str, values: Mapping[str, str], *, fragment: bool = False) -> RedirectResponse:
    """303 to the redirect URI with ``values`` added to its query (keeping its own, RFC 6749 §3.1.2)
    or put in its fragment. 303, not 307: the browser must not resend what it sent here (RFC 9700 §4.12)."""
    parts = urlsplit(redirect_uri)
    encoded = urlencode(values)
    if fragment:
        parts = parts._replace(fragment=encoded)
    else:
        parts = parts._replace(query=f"{parts.query}&{encoded}" if parts.query else encoded)
    return RedirectResponse(urlunsplit(parts), status_code=303, headers=NO_STORE)


def _error_page(status: int, error: str, description: str) -> HTMLResponse:
    """What the user sees when no redirect is safe (or possible)."""
    body = f"<!doctype html><title>Authorization error</title><h1>{escape(error)}</h1><p>{escape(description)}</p>"
    return HTMLResponse(body, status_code=status, headers=NO_STORE)
