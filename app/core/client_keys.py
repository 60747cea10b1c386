"""A client's public keys (RFC 7591 §2 ``jwks`` / ``jwks_uri``) and JWTs signed with them.

RFC 7591 §2: "jwks_uri: URL string referencing the client's JSON Web Key (JWK) Set [RFC7517] document,
which contains the client's public keys. ... Use of this parameter is preferred over the "jwks"
parameter, as it allows for easier key rotation." A JWT naming a ``kid`` the cached document lacks may
have been signed with a rotated key, so the document is fetched once more (the fetcher rate-limits it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from app.core import jose
from app.core.model import ClientRecord

# The client's JWKS: (client, refresh) -> document. ``refresh`` asks a jwks_uri client's keys to be
# fetched again because a JWT names an unknown kid.
ClientKeys = Callable[[ClientRecord, bool], Awaitable[dict[str, Any]]]


async def verify_with_client_keys(
    token: str, algorithm: str, *, client: ClientRecord, client_keys: ClientKeys
) -> jose.VerifiedJwt:
    """Verify ``token`` with the client's public keys; with a ``jwks_uri`` client whose keys lack the
    token's ``kid``, once more with its keys fetched again. Raises ``jose.JoseFailure``."""
    try:
        return jose.verify(token, jose.public_key_set(await client_keys(client, False)), algorithm)
    except jose.UnknownKeyId:
        if client.jwks_uri is None:
            raise
        return jose.verify(token, jose.public_key_set(await client_keys(client, True)), algorithm)
