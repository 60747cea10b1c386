"""Verifying a JWT with a client's public keys, refetched once for an unknown kid (RFC 7591 §2)."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from app.core import jose
from app.core.client_keys import verify_with_client_keys
from app.core.model import ClientAuthMethod, ClientRecord, ClientType

OLD_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "old"})
NEW_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "new"})
TOKEN = jwt.encode({"alg": "ES256", "kid": "new"}, {"iss": "c"}, NEW_KEY, algorithms=["ES256"])


def client(**fields: Any) -> ClientRecord:
    return ClientRecord(
        id=1,
        service_id=1,
        alias=None,
        client_type=ClientType.CONFIDENTIAL,
        token_auth_method=ClientAuthMethod.PRIVATE_KEY_JWT,
        secret_hash=None,
        redirect_uris=(),
        response_types=frozenset(),
        grant_types=frozenset(),
        requestable_scopes=None,
        **fields,
    )


def rotating_keys(fetches: list[bool]) -> Any:
    async def client_keys(_client: ClientRecord, refresh: bool) -> dict[str, Any]:
        fetches.append(refresh)
        return {"keys": [(NEW_KEY if refresh else OLD_KEY).as_dict(private=False)]}

    return client_keys


async def test_an_unknown_kid_refetches_a_jwks_uri_once() -> None:
    fetches: list[bool] = []
    record = client(jwks_uri="https://client.example/jwks")
    verified = await verify_with_client_keys(TOKEN, "ES256", client=record, client_keys=rotating_keys(fetches))
    assert verified.claims == {"iss": "c"}
    assert fetches == [False, True]


async def test_registered_keys_are_not_refetched() -> None:
    fetches: list[bool] = []
    record = client(jwks={"keys": [OLD_KEY.as_dict(private=False)]})
    with pytest.raises(jose.UnknownKeyId):
        await verify_with_client_keys(TOKEN, "ES256", client=record, client_keys=rotating_keys(fetches))
    assert fetches == [False]
