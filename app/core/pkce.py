"""Proof Key for Code Exchange (RFC 7636) checks at push time."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.core import result_codes
from app.core.errors import InvalidRequest

# RFC 7636 §4.2: code_challenge = 43*128unreserved; unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# RFC 7636 §4.2: S256 is BASE64URL-ENCODE(SHA256(ASCII(code_verifier))): exactly 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
SUPPORTED_METHODS = ("S256", "plain")


@dataclass(frozen=True, slots=True)
class PkcePolicy:
    required: bool
    s256_required: bool


@dataclass(frozen=True, slots=True)
class CodeChallenge:
    challenge: str
    method: str


def validate_code_challenge(challenge: str | None, method: str | None, policy: PkcePolicy) -> CodeChallenge | None:
    """Validate ``code_challenge`` and ``code_challenge_method`` against the policy.

    RFC 7636 §4.4.1: "If the server requires Proof Key for Code Exchange (PKCE) by OAuth public
    clients and the client does not send the "code_challenge" in the request, the authorization
    endpoint MUST return ... "error" value set to "invalid_request"".
    RFC 7636 §4.3: code_challenge_method "Defaults to "plain" if not present in the request."
    """
    if challenge is None:
        if method is not None:
            raise InvalidRequest("code_challenge_method was sent without code_challenge")
        if policy.required or policy.s256_required:
            raise InvalidRequest(
                "code_challenge is required (PKCE, RFC 7636)", result_code=result_codes.CODE_CHALLENGE_MISSING
            )
        return None
    effective_method = method or "plain"
    if effective_method not in SUPPORTED_METHODS:
        raise InvalidRequest(
            "code_challenge_method must be S256 or plain", result_code=result_codes.CODE_CHALLENGE_METHOD_UNSUPPORTED
        )
    if policy.s256_required and effective_method != "S256":
        raise InvalidRequest(
            "code_challenge_method=S256 is required", result_code=result_codes.CODE_CHALLENGE_METHOD_S256_REQUIRED
        )
    pattern = _S256_CHALLENGE if effective_method == "S256" else _CODE_CHALLENGE
    if not pattern.fullmatch(challenge):
        raise InvalidRequest(
            "code_challenge is malformed: S256 needs 43 base64url characters, plain 43 to 128 unreserved ones",
            result_code=result_codes.CODE_CHALLENGE_MALFORMED,
        )
    return CodeChallenge(challenge=challenge, method=effective_method)
