"""The push itself (RFC 9126 §2), without HTTP: :func:`app.core.par.push` against in-memory implementations of
the ports it uses (``ClientDirectory``, ``PushedRequestStore``, ``ReplayStore``, ``SecretHashStore``, ``ClientKeys``).

PAR-07, PAR-10, PAR-11, PAR-12, PAR-13, PAR-14, PAR-15, GEN-01, GEN-05, RES-02: what each front door relies on,
checked once here; tests/api/ checks the same rules over the wire."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest

from app.core.client_auth import BasicCredentials, PushContext, PushPolicy, SlowHashChecks
from app.core.model import (
    AudiencePolicy,
    ClientAuthMethod,
    ClientRecord,
    ClientType,
    GrantType,
    PushedRequestRecord,
    ResponseType,
    ScopeDefinition,
    ServiceRecord,
)
from app.core.par import PushAction, PushOutcome, PushRequest, push
from app.core.params import ParameterBounds
from app.core.secrets import REQUEST_URI_PREFIX, SecretBox, SecretHasher, reference_hash
from tests.core.ports import MemoryClients, MemoryPushedRequests, MemoryReplayStore, MemorySecretHashes
from tests.factories import CODE_CHALLENGE, REDIRECT_URI, par_params

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
PEPPER = b"a pepper for the core push tests"
SECRET = "the-client-secret-of-client-7"
HASHER = SecretHasher(PEPPER)
LIMITS = ParameterBounds(max_parameters=30, max_parameter_bytes=2000, max_total_bytes=20_000)

SERVICE = ServiceRecord(
    id=1,
    name="core",
    issuer="https://as.example.org",
    pushed_auth_req_endpoint="https://as.example.org/par",
    token_endpoint="https://as.example.org/token",
    client_assertion_audience_policy=AudiencePolicy.RFC9126,
    pushed_auth_req_duration=90,
    authorization_session_duration=1800,
    consume_request_uri_on_resolve=False,
    par_required=False,
    supported_scopes=(ScopeDefinition("openid"), ScopeDefinition("profile")),
    supported_response_types=frozenset({ResponseType.CODE}),
    supported_token_auth_methods=frozenset(
        {ClientAuthMethod.CLIENT_SECRET_BASIC, ClientAuthMethod.CLIENT_SECRET_POST, ClientAuthMethod.NONE}
    ),
    pkce_required=False,
    pkce_s256_required=False,
    max_state_length=100,
    max_nonce_length=100,
)
BASIC_CLIENT = ClientRecord(
    id=7,
    service_id=SERVICE.id,
    alias=None,
    client_type=ClientType.CONFIDENTIAL,
    token_auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
    secret_hash=HASHER.hash(SECRET),
    redirect_uris=(REDIRECT_URI,),
    response_types=frozenset({ResponseType.CODE}),
    grant_types=frozenset({GrantType.AUTHORIZATION_CODE}),
    requestable_scopes=None,
)
POST_CLIENT = replace(BASIC_CLIENT, id=8, token_auth_method=ClientAuthMethod.CLIENT_SECRET_POST)


@dataclass
class Stores:
    """The ports a push reads its client from and writes its request to."""

    clients: MemoryClients
    pushed_requests: MemoryPushedRequests

    @classmethod
    def of(cls, clients: list[ClientRecord], *, client_gone: bool = False) -> Stores:
        return cls(MemoryClients(clients), MemoryPushedRequests(client_gone=client_gone))

    @property
    def stored(self) -> list[PushedRequestRecord]:
        return self.pushed_requests.stored

    async def push(self, request: PushRequest) -> PushOutcome:
        return await push(
            request,
            service=SERVICE,
            clients=self.clients,
            pushed_requests=self.pushed_requests,
            auth=auth_context(),
            limits=LIMITS,
            now=NOW,
        )


async def registered_keys(client: ClientRecord, refresh: bool) -> dict[str, Any]:
    """``ClientKeys``: the client's registered JWKS (no jwks_uri here)."""
    return client.jwks or {"keys": []}


def auth_context() -> PushContext:
    return PushContext(
        policy=PushPolicy(
            hasher=HASHER,
            secret_box=SecretBox.derived_from_pepper(PEPPER),
            clock_skew=timedelta(seconds=10),
            max_assertion_lifetime=timedelta(minutes=5),
            dpop_nonce_key=b"dpop nonce key for the core tests",
            dpop_max_age=timedelta(minutes=5),
            max_request_object_lifetime=timedelta(minutes=60),
            imported_hash_checks=SlowHashChecks(in_flight=1, waiting=8),
        ),
        secret_hashes=MemorySecretHashes(),  # none replaced here: every secret is a keyed hash
        client_keys=registered_keys,
        replay_store=MemoryReplayStore(),
    )


async def push_basic(
    store: Stores, params: dict[str, str] | str, secret: str = SECRET, client: ClientRecord = BASIC_CLIENT
) -> PushOutcome:
    """A push authenticated with client_secret_basic."""
    body = params if isinstance(params, str) else urlencode(params)
    request = PushRequest(parameters=body, basic=BasicCredentials(str(client.id), secret))
    return await store.push(request)


async def push_post(store: Stores, params: dict[str, str]) -> PushOutcome:
    """A push with its credentials in the body (client_secret_post)."""
    request = PushRequest(parameters=urlencode(params))
    return await store.push(request)


# --- success ------------------------------------------------------------------------------------------


async def test_a_valid_push_is_created_and_stored_once() -> None:
    """PAR-13/14/15: CREATED (201) with a urn request_uri and expires_in; the store holds the request under the
    hash of its reference, normalised, and expiring after the service's duration."""
    store = Stores.of([BASIC_CLIENT])
    outcome = await push_basic(store, par_params(BASIC_CLIENT))

    assert outcome.action is PushAction.CREATED and outcome.http_status == 201
    assert outcome.error is None and outcome.result_code == "A245001"
    assert outcome.client_auth_method is ClientAuthMethod.CLIENT_SECRET_BASIC and outcome.client_id == BASIC_CLIENT.id
    assert outcome.response_content == {"expires_in": 90, "request_uri": outcome.request_uri}
    assert outcome.request_uri is not None and outcome.request_uri.startswith(REQUEST_URI_PREFIX)
    reference = outcome.request_uri.removeprefix(REQUEST_URI_PREFIX)
    assert len(reference) >= 43  # 256 random bits, base64url
    [record] = store.stored
    assert record.reference_hash == reference_hash(reference) and reference not in record.reference_hash
    assert (record.service_id, record.client_id) == (SERVICE.id, BASIC_CLIENT.id)
    assert (record.created_at, record.expires_at) == (NOW, NOW + timedelta(seconds=90))
    assert record.request == {
        "responseType": "code",
        "redirectUri": REDIRECT_URI,
        "scopes": ["openid", "profile"],
        "state": "af0ifjsldkj",
        "codeChallenge": CODE_CHALLENGE,
        "codeChallengeMethod": "S256",
    }


async def test_client_authentication_parameters_are_not_stored() -> None:
    """PAR-10: client_secret authenticates the client and is not part of the stored request; the rest is."""
    store = Stores.of([POST_CLIENT])
    outcome = await push_post(store, par_params(POST_CLIENT, client_secret=SECRET, extension="kept"))

    assert outcome.action is PushAction.CREATED, outcome
    assert outcome.client_auth_method is ClientAuthMethod.CLIENT_SECRET_POST
    [record] = store.stored
    stored = parse_qs(record.parameters)
    assert "client_secret" not in stored and SECRET not in record.parameters
    assert stored["extension"] == ["kept"] and stored["client_id"] == [str(POST_CLIENT.id)]


async def test_every_push_gets_its_own_request_uri() -> None:
    store = Stores.of([BASIC_CLIENT])
    first = await push_basic(store, par_params(BASIC_CLIENT))
    second = await push_basic(store, par_params(BASIC_CLIENT))
    assert first.request_uri != second.request_uri
    assert len({record.reference_hash for record in store.stored}) == 2


# --- parameter validation: BAD_REQUEST, nothing stored -------------------------------------------------


@pytest.mark.parametrize(
    ("params", "error"),
    [
        pytest.param(par_params(BASIC_CLIENT, response_type=None), "invalid_request", id="no-response_type"),
        pytest.param(par_params(BASIC_CLIENT, response_type="token"), "unsupported_response_type", id="token"),
        pytest.param(par_params(BASIC_CLIENT, redirect_uri=None), "invalid_request", id="no-redirect_uri"),
        pytest.param(
            par_params(BASIC_CLIENT, redirect_uri="https://attacker.example/cb"), "invalid_request", id="unregistered"
        ),
        pytest.param(par_params(BASIC_CLIENT, scope="openid admin"), "invalid_scope", id="unsupported-scope"),
        pytest.param(
            par_params(BASIC_CLIENT, request_uri="urn:ietf:params:oauth:request_uri:x"),
            "invalid_request",
            id="request_uri",  # PAR-11
        ),
        pytest.param(par_params(BASIC_CLIENT, resource="https://rs.example/#f"), "invalid_target", id="resource"),
        pytest.param(par_params(BASIC_CLIENT, code_challenge="short"), "invalid_request", id="code_challenge"),
        pytest.param(par_params(BASIC_CLIENT, state="s" * 101), "invalid_request", id="state-too-long"),
    ],
)
async def test_an_invalid_request_is_a_bad_request_and_stores_nothing(params: dict[str, str], error: str) -> None:
    """PAR-12: the pushed request is validated as the authorization endpoint would validate it."""
    store = Stores.of([BASIC_CLIENT])
    outcome = await push_basic(store, params)

    assert outcome.action is PushAction.BAD_REQUEST and outcome.http_status == 400
    assert outcome.error == error, outcome.response_content
    assert outcome.request_uri is None and not outcome.basic_challenge
    # The client was authenticated before its request was validated.
    assert outcome.client_auth_method is ClientAuthMethod.CLIENT_SECRET_BASIC and outcome.client_id == BASIC_CLIENT.id
    assert store.stored == []


async def test_a_repeated_parameter_is_invalid_request() -> None:
    """GEN-01: a parameter sent twice is refused before the client is even looked up."""
    store = Stores.of([BASIC_CLIENT])
    outcome = await push_basic(store, urlencode(par_params(BASIC_CLIENT)) + "&scope=openid")

    assert outcome.action is PushAction.BAD_REQUEST and outcome.error == "invalid_request"
    assert outcome.client_id is None and store.stored == []


# --- client authentication: UNAUTHORIZED, nothing stored -----------------------------------------------


async def test_a_wrong_basic_secret_is_invalid_client_with_a_challenge() -> None:
    """PAR-07, GEN-05: 401 invalid_client; the client used the Authorization header, so WWW-Authenticate."""
    store = Stores.of([BASIC_CLIENT])
    outcome = await push_basic(store, par_params(BASIC_CLIENT), secret="wrong")

    assert outcome.action is PushAction.UNAUTHORIZED and outcome.http_status == 401
    assert outcome.error == "invalid_client" and outcome.basic_challenge
    assert outcome.client_auth_method is None and outcome.request_uri is None
    assert store.stored == []


async def test_a_wrong_posted_secret_is_invalid_client_without_a_challenge() -> None:
    store = Stores.of([POST_CLIENT])
    outcome = await push_post(store, par_params(POST_CLIENT, client_secret="wrong"))

    assert outcome.action is PushAction.UNAUTHORIZED and outcome.error == "invalid_client"
    assert not outcome.basic_challenge
    assert store.stored == []


async def test_an_unknown_client_is_invalid_client() -> None:
    store = Stores.of([BASIC_CLIENT])
    stranger = replace(BASIC_CLIENT, id=99)
    outcome = await push_basic(store, par_params(stranger), client=stranger)

    assert outcome.action is PushAction.UNAUTHORIZED and outcome.error == "invalid_client"
    assert store.stored == []


async def test_a_client_of_another_service_is_unknown_here() -> None:
    store = Stores.of([replace(BASIC_CLIENT, service_id=SERVICE.id + 1)])
    outcome = await push_basic(store, par_params(BASIC_CLIENT))

    assert outcome.error == "invalid_client" and store.stored == []


async def test_a_method_the_client_did_not_register_is_invalid_client() -> None:
    """PAR-07: the client authenticates with the method it registered (client_secret_basic here)."""
    store = Stores.of([BASIC_CLIENT])
    outcome = await push_post(store, par_params(BASIC_CLIENT, client_secret=SECRET))

    assert outcome.action is PushAction.UNAUTHORIZED and outcome.error == "invalid_client"
    assert store.stored == []


async def test_a_client_deleted_before_the_insert_is_invalid_client() -> None:
    """The store refuses a request whose client no longer exists: the push fails as for an unknown client."""
    store = Stores.of([BASIC_CLIENT], client_gone=True)
    outcome = await push_basic(store, par_params(BASIC_CLIENT))

    assert outcome.action is PushAction.UNAUTHORIZED and outcome.error == "invalid_client"
    assert outcome.result_code == "A247307" and outcome.basic_challenge
    assert outcome.request_uri is None and store.stored == []
