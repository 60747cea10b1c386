"""The FAPI 2.0 profile: what a service's ``fapiModes`` require of PAR, applied in one place.

A service stores its own settings; :func:`apply_fapi_modes` puts the profile's requirements on top of
them, so that the protocol rules read the effective settings of a ``ServiceRecord`` rather than the
modes (``ServiceRecord.fapi2`` tells the few rules that have no setting of their own).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from app.core.model import FAPI2_AUTH_METHODS, AudiencePolicy, FapiMode, ResponseType, ServiceRecord

# FAPI 2.0 §5.3.2.2-12 (FAPI-07): "expires_in" shall be less than 600 seconds.
FAPI2_MAX_PUSHED_REQUEST_DURATION = 599


def apply_fapi_modes(service: ServiceRecord, modes: Collection[FapiMode]) -> ServiceRecord:
    """``service`` (its stored settings, defaults filled in) as its FAPI modes make it; the ids are those
    of docs/requirements.md, the clauses the FAPI 2.0 Security Profile's.

    FAPI2_SECURITY:

    - pushed authorization requests only (FAPI-02, §5.3.2.2-3);
    - ``response_type`` ``code`` only (FAPI-06, §5.3.2.2-1);
    - PKCE with ``S256`` (FAPI-04, §5.3.2.2-5);
    - a request URI ``expires_in`` of less than 600 seconds (FAPI-07, §5.3.2.2-12);
    - clients authenticate with mutual TLS or ``private_key_jwt`` only (FAPI-09, §5.3.2.1-6);
    - a client assertion's ``aud`` is the issuer identifier, as a string (FAPI-10, §5.3.2.1-8).

    FAPI2_MESSAGE_SIGNING_AUTH_REQ: signed request objects only (FAPI-19, FAPI 2.0 Message Signing).
    """
    if FapiMode.FAPI2_MESSAGE_SIGNING_AUTH_REQ in modes:
        service = replace(service, request_object_required=True)
    if FapiMode.FAPI2_SECURITY not in modes:
        return service
    return replace(
        service,
        fapi2=True,
        client_assertion_audience_policy=AudiencePolicy.FAPI2,
        pushed_auth_req_duration=min(service.pushed_auth_req_duration, FAPI2_MAX_PUSHED_REQUEST_DURATION),
        par_required=True,
        supported_response_types=service.supported_response_types & {ResponseType.CODE},
        supported_token_auth_methods=service.supported_token_auth_methods & FAPI2_AUTH_METHODS,
        pkce_required=True,
        pkce_s256_required=True,
    )
