"""The ``authlete`` PyPI SDK (API V3), unchanged, drives the management and backend APIs over real HTTP.

An authorization server built on the SDK must work against par-server by changing only ``baseUrl``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from authlete.api import AuthleteApi, AuthleteApiException, AuthleteApiImpl
from authlete.conf import AuthleteConfiguration
from authlete.dto import (
    Client,
    ClientSecretUpdateRequest,
    ClientSecretUpdateResponse,
    PushedAuthReqAction,
    PushedAuthReqRequest,
    PushedAuthReqResponse,
    Scope,
    Service,
)
from authlete.types import ClientAuthMethod, ClientType, GrantType, ResponseType

from tests.factories import REDIRECT_URI, ClientHandle, par_params
from tests.interop.conftest import REQUEST_URI_PREFIX, UNREGISTERED_REDIRECT_URI, LiveServer

pytestmark = pytest.mark.interop


def sdk(server: LiveServer, service_id: int | None, token: str) -> AuthleteApi:
    return AuthleteApiImpl(
        AuthleteConfiguration(
            {
                "apiVersion": "V3",
                "baseUrl": server.base_url,
                "serviceApiKey": str(service_id),
                "serviceAccessToken": token,
            }
        )
    )


def sdk_create_service(server: LiveServer, name: str) -> Service:
    service = Service({"serviceName": name})
    service.supportedScopes = [Scope({"name": "openid"}), Scope({"name": "profile"})]
    return sdk(server, None, server.admin_token).createService(service)


@dataclass
class SdkService:
    service: Service
    api: AuthleteApi  # authorised with a service access token of ``service``


@pytest.fixture
def sdk_service(live_server: LiveServer) -> SdkService:
    """A service created through the SDK; the SDK's Service DTO drops ``serviceAccessToken``, so the
    service token is issued with the admin token."""
    service = sdk_create_service(live_server, "sdk service")
    token = live_server.create_service_token(service.apiKey)
    return SdkService(service, sdk(live_server, service.apiKey, token))


@pytest.fixture
def sdk_client(sdk_service: SdkService) -> Client:
    return sdk_service.api.createClient(
        Client(
            {
                "clientName": "sdk client",
                "description": "registered through the authlete SDK",
                "redirectUris": [REDIRECT_URI],
                "clientType": ClientType.CONFIDENTIAL,
                "tokenAuthMethod": ClientAuthMethod.CLIENT_SECRET_BASIC,
                "responseTypes": [ResponseType.CODE],
                "grantTypes": [GrantType.AUTHORIZATION_CODE],
                "pkceRequired": True,
            }
        )
    )


def handle(client: Client) -> ClientHandle:
    return ClientHandle(id=client.clientId, secret=client.clientSecret, body={})


def sdk_push(api: AuthleteApi, client: Client, secret: str, **overrides: str | None) -> PushedAuthReqResponse:
    """What an authorization server does with a client's push: forward the form and the Basic credentials."""
    return api.pushAuthorizationRequest(
        PushedAuthReqRequest(
            {
                "parameters": urlencode(par_params(handle(client), **overrides)),
                "clientId": str(client.clientId),
                "clientSecret": secret,
            }
        )
    )


def comparable(client: Client) -> dict[str, Any]:
    """Everything an update must keep, i.e. all but the name and the modification time."""
    data: dict[str, Any] = json.loads(client.to_json())
    for volatile in ("clientName", "modifiedAt"):
        data.pop(volatile)
    return data


def test_admin_token_creates_and_lists_services(live_server: LiveServer) -> None:
    """The SDK's service-owner calls (createService, getServiceList) with the admin token;
    META-01 / PAR-04: the answer names the issuer and the PAR endpoint derived from the public base URL."""
    created = sdk_create_service(live_server, "sdk service")
    assert created.apiKey > 0
    assert created.serviceName == "sdk service"
    assert [scope.name for scope in created.supportedScopes] == ["openid", "profile"]
    assert created.issuer == f"{live_server.base_url}/services/{created.apiKey}"
    assert created.pushedAuthReqEndpoint == f"{created.issuer}/par"
    listed = sdk(live_server, None, live_server.admin_token).getServiceList()
    assert listed.totalCount == 1
    assert [(s.apiKey, s.serviceName) for s in listed.services] == [(created.apiKey, "sdk service")]


def test_client_create_get_and_list(sdk_service: SdkService, sdk_client: Client) -> None:
    """createClient answers with the generated secret once; getClient and getClientList
    return the client without it."""
    assert sdk_client.clientId > 0
    assert sdk_client.clientSecret
    assert sdk_client.clientType is ClientType.CONFIDENTIAL
    assert sdk_client.tokenAuthMethod is ClientAuthMethod.CLIENT_SECRET_BASIC
    assert sdk_client.redirectUris == [REDIRECT_URI]
    assert sdk_client.responseTypes == [ResponseType.CODE]
    assert sdk_client.grantTypes == [GrantType.AUTHORIZATION_CODE]
    fetched = sdk_service.api.getClient(sdk_client.clientId)
    assert fetched.clientSecret is None
    assert (fetched.clientId, fetched.clientName, fetched.pkceRequired) == (sdk_client.clientId, "sdk client", True)
    listed = sdk_service.api.getClientList()
    assert listed.totalCount == 1
    assert [c.clientId for c in listed.clients] == [sdk_client.clientId]


def test_update_client_changes_only_what_changed(sdk_service: SdkService, sdk_client: Client) -> None:
    """The SDK sends every attribute of the DTO; a read-modify-write of the name keeps everything else."""
    before = sdk_service.api.getClient(sdk_client.clientId)
    before.clientName = "renamed sdk client"
    updated = sdk_service.api.updateClient(before)
    assert updated.clientName == "renamed sdk client"
    after = sdk_service.api.getClient(sdk_client.clientId)
    assert after.clientName == "renamed sdk client"
    assert comparable(after) == comparable(before)
    assert after.modifiedAt >= before.modifiedAt
    assert sdk_push(sdk_service.api, sdk_client, sdk_client.clientSecret).action is PushedAuthReqAction.CREATED


def test_sparse_update_keeps_fields_sent_as_null(sdk_service: SdkService, sdk_client: Client) -> None:
    """The contract of client/update: "fields that are absent or null keep their value". A DTO built with
    only clientId and clientName reaches the server with every other string and list as null (its
    booleans go as false, which the server cannot tell from a real false)."""
    sdk_service.api.updateClient(Client({"clientId": sdk_client.clientId, "clientName": "renamed sdk client"}))
    after = sdk_service.api.getClient(sdk_client.clientId)
    assert after.clientName == "renamed sdk client"
    assert (after.description, after.redirectUris, after.tokenAuthMethod) == (
        "registered through the authlete SDK",
        [REDIRECT_URI],
        ClientAuthMethod.CLIENT_SECRET_BASIC,
    )


def test_the_sdk_sends_false_and_0_for_unset_fields() -> None:
    """What a sparse DTO puts on the wire: every unset boolean as false and every unset number as 0.
    The server cannot tell these from a caller's own false and 0."""
    sent = json.loads(Service({"serviceName": "renamed"}).to_json())
    assert (sent["parRequired"], sent["pushedAuthReqDuration"], sent["pkceRequired"]) == (False, 0, False)
    sent = json.loads(Client({"clientName": "renamed"}).to_json())
    assert (sent["pkceRequired"], sent["parRequired"]) == (False, False)


def test_sparse_service_update_through_the_sdk_replaces(live_server: LiveServer) -> None:
    """So, through the SDK, updateService replaces what it sends as false or 0, as Authlete's
    replace-on-update does: pushedAuthReqDuration 0 is the server default (60 s), parRequired false.
    A read-modify-write keeps everything."""
    service = Service({"serviceName": "sdk service", "pushedAuthReqDuration": 300, "parRequired": True})
    service.supportedScopes = [Scope({"name": "openid"})]
    created = sdk(live_server, None, live_server.admin_token).createService(service)
    api = sdk(live_server, created.apiKey, live_server.create_service_token(created.apiKey))
    assert (created.pushedAuthReqDuration, created.parRequired) == (300, True)

    kept = api.getService(created.apiKey)
    kept.serviceName = "renamed by read-modify-write"
    api.updateService(kept)
    after = api.getService(created.apiKey)
    assert (after.serviceName, after.pushedAuthReqDuration, after.parRequired) == (kept.serviceName, 300, True)

    api.updateService(Service({"apiKey": created.apiKey, "serviceName": "renamed sparsely"}))
    after = api.getService(created.apiKey)
    assert after.serviceName == "renamed sparsely"
    assert (after.pushedAuthReqDuration, after.parRequired) == (60, False)
    assert [scope.name for scope in after.supportedScopes] == ["openid"]  # lists go as null: kept


def test_sparse_client_update_through_the_sdk_resets_its_booleans(sdk_service: SdkService, sdk_client: Client) -> None:
    """updateClient with a sparse DTO sends pkceRequired=false: the client no longer requires PKCE."""
    assert sdk_service.api.getClient(sdk_client.clientId).pkceRequired is True
    sdk_service.api.updateClient(Client({"clientId": sdk_client.clientId, "clientName": "renamed sparsely"}))
    assert sdk_service.api.getClient(sdk_client.clientId).pkceRequired is False


def test_refresh_client_secret_replaces_the_secret(sdk_service: SdkService, sdk_client: Client) -> None:
    """refreshClientSecret: the new secret authenticates and the old one stops working (PAR-07)."""
    refreshed = sdk_service.api.refreshClientSecret(sdk_client.clientId)
    assert refreshed.newClientSecret and refreshed.newClientSecret != sdk_client.clientSecret
    assert sdk_push(sdk_service.api, sdk_client, refreshed.newClientSecret).action is PushedAuthReqAction.CREATED
    assert sdk_push(sdk_service.api, sdk_client, sdk_client.clientSecret).action is PushedAuthReqAction.UNAUTHORIZED


def test_create_client_with_its_own_secret(sdk_service: SdkService) -> None:
    """A client moving from another server keeps its secret: the SDK's Client DTO carries clientSecret."""
    own_secret = secrets.token_urlsafe(32)
    created = sdk_service.api.createClient(
        Client(
            {
                "clientName": "adopted through the SDK",
                "clientSecret": own_secret,
                "redirectUris": [REDIRECT_URI],
                "clientType": ClientType.CONFIDENTIAL,
                "tokenAuthMethod": ClientAuthMethod.CLIENT_SECRET_BASIC,
                "responseTypes": [ResponseType.CODE],
                "grantTypes": [GrantType.AUTHORIZATION_CODE],
            }
        )
    )
    assert created.clientSecret == own_secret
    assert sdk_push(sdk_service.api, created, own_secret).action is PushedAuthReqAction.CREATED


def test_update_client_secret(sdk_service: SdkService, sdk_client: Client) -> None:
    """client/secret/update sets the secret the caller gives. The SDK's own updateClientSecret (1.3.0)
    fails before it sends anything: it sets ``clientId`` and ``clilentSecret`` on a request DTO that
    declares neither. The same DTO and call path, with the field spelled right, works."""
    own_secret = secrets.token_urlsafe(32)
    with pytest.raises(AttributeError):
        sdk_service.api.updateClientSecret(sdk_client.clientId, own_secret)
    call_service_post_api = sdk_service.api._AuthleteApiImpl__callServicePostApi
    updated = call_service_post_api(
        f"/api/{sdk_service.service.apiKey}/client/secret/update/{sdk_client.clientId}",
        ClientSecretUpdateRequest({"clientSecret": own_secret}),
        ClientSecretUpdateResponse,
    )
    assert updated.newClientSecret == own_secret
    assert updated.resultCode == "A087001"
    assert sdk_push(sdk_service.api, sdk_client, own_secret).action is PushedAuthReqAction.CREATED
    assert sdk_push(sdk_service.api, sdk_client, sdk_client.clientSecret).action is PushedAuthReqAction.UNAUTHORIZED


def test_get_and_delete_service(live_server: LiveServer) -> None:
    """getService and deleteService (API V3: the service is the configured serviceApiKey) with the admin
    token; a deleted service is not found, and its clients can no longer push."""
    created = sdk_create_service(live_server, "doomed")
    owner = sdk(live_server, created.apiKey, live_server.admin_token)
    assert owner.getService(created.apiKey).serviceName == "doomed"
    owner.deleteService(created.apiKey)
    with pytest.raises(AuthleteApiException) as raised:
        owner.getService(created.apiKey)
    assert raised.value.response is not None and raised.value.response.status_code == 404
    assert sdk(live_server, None, live_server.admin_token).getServiceList().totalCount == 0


def test_push_creates_a_request_uri(sdk_service: SdkService, sdk_client: Client) -> None:
    """PAR-13 / PAR-14: CREATED, A245001, requestUri, and responseContent is the RFC 9126
    §2.2 body to relay (request_uri == requestUri, expires_in == pushedAuthReqDuration)."""
    response = sdk_push(sdk_service.api, sdk_client, sdk_client.clientSecret)
    assert response.action is PushedAuthReqAction.CREATED
    assert response.resultCode == "A245001"
    assert response.requestUri.startswith(REQUEST_URI_PREFIX)
    assert len(response.requestUri) - len(REQUEST_URI_PREFIX) >= 43
    assert response.clientAuthMethod is ClientAuthMethod.CLIENT_SECRET_BASIC
    assert json.loads(response.responseContent) == {
        "request_uri": response.requestUri,
        "expires_in": sdk_service.service.pushedAuthReqDuration,
    }
    assert sdk_service.service.pushedAuthReqDuration > 0


def test_push_with_wrong_secret_is_unauthorized(sdk_service: SdkService, sdk_client: Client) -> None:
    """Failed client authentication is a 200 answer with action UNAUTHORIZED (GEN-05)."""
    response = sdk_push(sdk_service.api, sdk_client, f"wrong-{sdk_client.clientSecret}")
    assert response.action is PushedAuthReqAction.UNAUTHORIZED
    assert response.requestUri is None
    assert json.loads(response.responseContent)["error"] == "invalid_client"


def test_push_with_unregistered_redirect_uri_is_bad_request(
    live_server: LiveServer, sdk_service: SdkService, sdk_client: Client
) -> None:
    """PAR-12 / PAR-20: BAD_REQUEST with invalid_request; the RFC 9126 endpoint answers the same
    request with the same JSON, since both front doors share one push."""
    response = sdk_push(sdk_service.api, sdk_client, sdk_client.clientSecret, redirect_uri=UNREGISTERED_REDIRECT_URI)
    assert response.action is PushedAuthReqAction.BAD_REQUEST
    content = json.loads(response.responseContent)
    assert content["error"] == "invalid_request"
    client = handle(sdk_client)
    direct = httpx.post(
        f"{live_server.base_url}/services/{sdk_service.service.apiKey}/par",
        data=par_params(client, redirect_uri=UNREGISTERED_REDIRECT_URI),
        headers=client.basic(),
        trust_env=False,
    )
    assert direct.status_code == 400
    assert direct.json() == content


def test_deleted_client_is_gone(sdk_service: SdkService, sdk_client: Client) -> None:
    """deleteClient: the client is no longer found (404 ResultError) and can no longer push (invalid_client)."""
    sdk_service.api.deleteClient(sdk_client.clientId)
    with pytest.raises(AuthleteApiException) as raised:
        sdk_service.api.getClient(sdk_client.clientId)
    assert raised.value.response.status_code == 404
    assert sdk_service.api.getClientList().totalCount == 0
    response = sdk_push(sdk_service.api, sdk_client, sdk_client.clientSecret)
    assert response.action is PushedAuthReqAction.UNAUTHORIZED
    assert json.loads(response.responseContent)["error"] == "invalid_client"


def test_token_of_another_service_is_forbidden(
    live_server: LiveServer, sdk_service: SdkService, sdk_client: Client
) -> None:
    """Multi-tenancy: a service access token acts only on its own service; another
    service's token gets 403 ResultError A003204, for management calls and for pushes alike."""
    other = live_server.create_service()
    intruder = sdk(live_server, sdk_service.service.apiKey, other.token)
    calls: list[Callable[[], object]] = [
        lambda: intruder.getClient(sdk_client.clientId),
        lambda: intruder.getClientList(),
        lambda: sdk_push(intruder, sdk_client, sdk_client.clientSecret),
    ]
    for call in calls:
        with pytest.raises(AuthleteApiException) as raised:
            call()
        assert raised.value.response is not None
        assert raised.value.response.status_code == 403
        assert raised.value.response.json()["resultCode"] == "A003204"
