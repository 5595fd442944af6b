from __future__ import annotations

import time

import jwt
import pytest

from services.gateway.auth import Verifier, issue
from services.gateway.errors import ApiError

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_issued_token_verifies_to_its_account() -> None:
    assert Verifier(SECRET, "stepblend").account_id(bearer(issue(SECRET, "acct-1"))) == "acct-1"


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode({"sub": "a", "iat": 0, "exp": int(time.time()) - 3600, "iss": "stepblend"}, SECRET, "HS256"),
        jwt.encode({"sub": "a", "iat": 0, "exp": int(time.time()) + 3600, "iss": "other"}, SECRET, "HS256"),
        jwt.encode({"sub": "a", "iat": 0, "exp": int(time.time()) + 3600, "iss": "stepblend"}, "wrong-" + SECRET, "HS256"),
        jwt.encode({"sub": "a", "iat": 0, "exp": int(time.time()) + 3600, "iss": "stepblend"}, None, "none"),
        jwt.encode({"iat": 0, "exp": int(time.time()) + 3600, "iss": "stepblend"}, SECRET, "HS256"),
        "not.a.jwt",
    ],
    ids=["expired", "wrong-issuer", "wrong-secret", "alg-none", "no-subject", "garbage"],
)
def test_bad_tokens_are_401(token: str) -> None:
    with pytest.raises(ApiError) as caught:
        Verifier(SECRET, "stepblend").account_id(bearer(token))
    assert caught.value.status == 401
    assert caught.value.type == "authentication_error"


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer "])
def test_missing_or_malformed_header_is_401(header: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        Verifier(SECRET, "stepblend").account_id(header)
    assert caught.value.status == 401
