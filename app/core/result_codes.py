"""The Authlete result codes the server answers with (``resultCode``, and ``[code]`` in ``resultMessage``).

Every code the server sends is named here, once, so that a code is chosen by what it means and the
wire values can be read in one place. The values are plain strings: they go out exactly as written.

Authlete numbers its codes ``A`` + a three-digit API or feature + three digits whose first says who
failed: 0 success, 1 the server itself, 2 the API caller (the service), 3 the client. Each comment says
what the code means in this server.
"""

from __future__ import annotations

from typing import Final

# --- Pushed authorization request (/api/{serviceId}/pushed_auth_req, and the RFC 9126 endpoint) ---
PUSH_REGISTERED: Final = "A245001"  # success: the pushed authorization request is registered (CREATED)
PUSH_FAILED: Final = "A245101"  # the server failed to process the request (default of every error)
PUSH_PARAMETERS_MISSING: Final = "A245201"  # the API call's body has no 'parameters'
PUSH_INVALID_REQUEST: Final = "A245302"  # invalid_request (default of the OAuth errors)
PUSH_REQUEST_TOO_LARGE: Final = "A245303"  # invalid_request: the request is too large (413)
PUSH_UNAUTHORIZED_CLIENT: Final = "A245304"  # unauthorized_client
PUSH_UNSUPPORTED_RESPONSE_TYPE: Final = "A245305"  # unsupported_response_type
PUSH_INVALID_SCOPE: Final = "A245306"  # invalid_scope
PUSH_REQUEST_NOT_SUPPORTED: Final = "A245307"  # request_not_supported: a request object outside the push
CLIENT_ID_MISMATCH: Final = "A247303"  # client_id and the Basic credentials name different clients
CLIENT_ID_MISSING: Final = "A247306"  # the client_id parameter is missing
CLIENT_NOT_REGISTERED: Final = "A247307"  # invalid_client: no such client in this service
REQUEST_URI_PUSHED: Final = "A248301"  # a request_uri parameter was pushed (RFC 9126 §2.1 forbids it)
INVALID_REQUEST_OBJECT: Final = "A248304"  # invalid_request_object: the request object is rejected
INVALID_AUTHORIZATION_DETAILS: Final = "A249301"  # invalid_authorization_details (RFC 9396)
INVALID_TARGET: Final = "A251301"  # invalid_target: a resource is invalid or not acceptable (RFC 8707)
REDIRECT_URI_MISSING: Final = "A253302"  # the redirect_uri parameter is missing
REDIRECT_URI_NOT_REGISTERED: Final = "A253303"  # the redirect_uri is not one the client registered
REDIRECT_URI_MALFORMED: Final = "A253304"  # the redirect_uri is not absolute, has a fragment, or is not https

# --- Request checks at the push (PKCE, DPoP) ---
CODE_CHALLENGE_MISSING: Final = "A124301"  # PKCE is required and code_challenge is missing
CODE_CHALLENGE_METHOD_UNSUPPORTED: Final = "A124302"  # code_challenge_method is neither S256 nor plain
CODE_CHALLENGE_MALFORMED: Final = "A124303"  # code_challenge does not fit its method's syntax
CODE_CHALLENGE_METHOD_S256_REQUIRED: Final = "A124307"  # the service requires code_challenge_method=S256
DPOP_BINDING_REQUIRED: Final = "A001301"  # the client must bind its request to a DPoP key
INVALID_DPOP_PROOF: Final = "A001303"  # invalid_dpop_proof
DPOP_NONCE_REQUIRED: Final = "A350308"  # use_dpop_nonce: the DPoP proof must carry the server's nonce

# --- Authorization request (/api/{serviceId}/auth/authorization, resolve and consume) ---
AUTHORIZATION_PARAMETERS_MISSING: Final = "A004201"  # the API call's body has no 'parameters'
REQUEST_URI_RESOLVED: Final = "A008001"  # success: the authorization request is valid (resolved)
REQUEST_URI_CONSUMED: Final = "A008002"  # success: the pushed request is consumed (one-time use)
INVALID_REQUEST_URI: Final = "A008303"  # invalid_request_uri: unknown, expired, used or another client's
REQUEST_WITH_REQUEST_URI: Final = "A008304"  # request and request_uri are both present
PAR_REQUIRED_BY_CLIENT: Final = "A008305"  # the client requires pushed authorization requests
PAR_REQUIRED_BY_SERVICE: Final = "A008306"  # the service requires pushed authorization requests
REQUEST_URI_NOT_PUSHED: Final = "A008308"  # the request_uri was not issued by this server's push endpoint
REQUEST_OBJECT_REQUIRED: Final = "A008309"  # the client must send a signed request object

# --- Client authentication (invalid_client) ---
CLIENT_ASSERTION_TYPE_WRONG: Final = "A157302"  # client_assertion_type is not the JWT bearer type
CLIENT_AUTHENTICATION_FAILED: Final = "A157305"  # the client secret is wrong (default of invalid_client)
CLIENT_ASSERTION_ISSUER_WRONG: Final = "A157317"  # the assertion's iss or sub is not the client_id
CLIENT_ASSERTION_AUDIENCE_WRONG: Final = "A157318"  # the assertion's aud does not name this server
CLIENT_ASSERTION_TIME_MALFORMED: Final = "A157319"  # exp missing, or exp, iat or nbf not a number
CLIENT_ASSERTION_TIME_REJECTED: Final = "A157320"  # the assertion expired, is not yet valid or lives too long
CLIENT_ASSERTION_JTI_MISSING: Final = "A157321"  # the assertion has no usable jti claim
CLIENT_ASSERTION_REPLAYED: Final = "A157322"  # the assertion's jti was already used
CLIENT_ASSERTION_UNVERIFIED: Final = "A157326"  # the assertion cannot be read or its signature is rejected
CLIENT_CERTIFICATE_MISSING: Final = "A157327"  # mutual TLS authentication without a client certificate
CLIENT_KEYS_UNAVAILABLE: Final = "A157328"  # the client's keys could not be fetched from its jwksUri
CLIENT_AUTH_METHOD_DISABLED: Final = "A157344"  # the client's authentication method is not enabled for the service
CLIENT_AUTH_METHOD_MISMATCH: Final = "A157357"  # the request used another method than the client's registered one

# --- Management API: service, client, token ---
API_TOKEN_INVALID: Final = "A003201"  # 401: the access token is refused (shares A003201 with API_NOT_FOUND)
API_NOT_FOUND: Final = "A003201"  # 404 without a code of its own (shares A003201 with API_TOKEN_INVALID)
SERVICE_NOT_FOUND: Final = "A003202"  # the service does not exist
SERVICE_ACCESS_FORBIDDEN: Final = "A003204"  # 403: the access token does not grant access to this service
CLIENT_NOT_FOUND: Final = "A001213"  # the client does not exist (shares A001213 with UNSUPPORTED_MEDIA_TYPE)
CLIENT_SECRET_REFRESHED: Final = "A086001"  # success: a new client secret was generated
CLIENT_SECRET_UPDATED: Final = "A087001"  # success: the client secret was set to the given one

# --- Generic API errors (any /api/ path) ---
SERVER_ERROR: Final = "A001101"  # 500, or 503: the server or its storage failed
API_CALL_FAILED: Final = "A001201"  # the API call failed, with no more specific code (default of API errors)
API_UNAUTHORIZED: Final = "A001202"  # 401: the Authorization header is missing
API_BAD_REQUEST: Final = "A001203"  # 400: the body or the Authorization credentials are malformed
API_CONFLICT: Final = "A001204"  # 409: the call conflicts with what is stored
NO_SUCH_PATH: Final = "A001210"  # 404: no API at this path, or a path parameter is invalid
METHOD_NOT_ALLOWED: Final = "A001211"  # 405
REQUEST_BODY_TOO_LARGE: Final = "A001212"  # 413
UNSUPPORTED_MEDIA_TYPE: Final = "A001213"  # 415 (shares A001213 with CLIENT_NOT_FOUND)
TOO_MANY_REQUESTS: Final = "A001214"  # 429: a rate limit is exceeded
REQUEST_HEADERS_TOO_LARGE: Final = "A001216"  # 431
