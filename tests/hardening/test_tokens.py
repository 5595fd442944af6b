"""Forged, stale and misdirected tokens through real HTTP (issue 9, item 3).

tests/gateway/test_auth.py checks the verifier itself; this sends every bad token
to a running gateway — configured with RS256 keys and an audience, the setting
where algorithm confusion is possible at all — and expects each to be a 401
`authentication_error` in OpenAI's shape: `alg: none`, HS256 signed with the RSA
public key (HS/RS confusion), another RSA key under the same `kid`, expired and
not-yet-valid tokens beyond the 30 s clock-skew leeway (and accepted within it),
wrong issuer or audience, a tampered payload, an oversized token, a disabled
account (and the same token working again once it is enabled).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.gateway.auth import LEEWAY_S
from tests.hardening.stack import Account, Stack, error_of, running

AUDIENCE = "stepblend-api"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = Path(tmp_path_factory.mktemp("tokens"))
    private, public = _rsa_pair()
    (root / "jwt.pem").write_bytes(private)
    (root / "jwt.pub.pem").write_bytes(public)
    return {"root": root, "private": private, "public": public}


@pytest.fixture(scope="module")
def stack(keys: dict[str, Any]) -> Iterator[Stack]:
    root: Path = keys["root"]
    with running(
        root / "system",
        STEPBLEND_JWT_PRIVATE_KEY=str(root / "jwt.pem"),
        STEPBLEND_JWT_PUBLIC_KEY=str(root / "jwt.pub.pem"),
        STEPBLEND_JWT_AUDIENCE=AUDIENCE,
    ) as system:
        yield system


@pytest.fixture(scope="module")
def account(stack: Stack) -> Account:
    return stack.account(providers=("openai",))


@pytest.fixture(scope="module")
def kid(stack: Stack) -> str:
    return stack.control().keyring.current.kid


def _claims(account: Account, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": account.account_id, "iat": now, "exp": now + 3600, "iss": "stepblend", "aud": AUDIENCE}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _post(stack: Stack, token: str | None, raw_header: str | None = None) -> httpx.Response:
    headers = {}
    if raw_header is not None:
        headers["authorization"] = raw_header
    elif token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(f"{stack.base_url}/chat/completions", json=BODY, headers=headers, timeout=30)


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text[:300]
    error = error_of(response)
    assert error["type"] == "authentication_error", error
    assert response.headers["x-request-id"]


def test_a_good_token_is_served(stack: Stack, account: Account, keys: dict[str, Any], kid: str) -> None:
    assert _post(stack, account.token).status_code == 200
    mine = jwt.encode(_claims(account), keys["private"], "RS256", headers={"kid": kid})
    assert _post(stack, mine).status_code == 200


BAD_TOKENS: dict[str, Callable[[Account, dict[str, Any], str], str]] = {
    "alg-none": lambda a, k, kid: jwt.encode(_claims(a), None, "none", headers={"kid": kid}),  # type: ignore[arg-type]
    "alg-none-no-kid": lambda a, k, kid: jwt.encode(_claims(a), None, "none"),  # type: ignore[arg-type]
    "alg-none-unsigned-by-hand": lambda a, k, kid: (
        f"{_b64(orjson.dumps({'alg': 'none', 'typ': 'JWT', 'kid': kid}))}.{_b64(orjson.dumps(_claims(a)))}."
    ),
    "hs256-with-the-public-key": lambda a, k, kid: _hs256_by_hand(_claims(a), k["public"], kid),
    "hs256-with-the-public-key-no-kid": lambda a, k, kid: _hs256_by_hand(_claims(a), k["public"], None),
    "another-rsa-key-same-kid": lambda a, k, kid: jwt.encode(_claims(a), _rsa_pair()[0], "RS256", headers={"kid": kid}),
    "unknown-kid": lambda a, k, kid: jwt.encode(
        _claims(a), k["private"], "RS256", headers={"kid": "rs-0000000000000000"}
    ),
    "expired": lambda a, k, kid: jwt.encode(
        _claims(a, exp=int(time.time()) - 3600), k["private"], "RS256", headers={"kid": kid}
    ),
    "expired-just-past-leeway": lambda a, k, kid: jwt.encode(
        _claims(a, exp=int(time.time()) - LEEWAY_S - 15), k["private"], "RS256", headers={"kid": kid}
    ),
    "not-yet-valid": lambda a, k, kid: jwt.encode(
        _claims(a, nbf=int(time.time()) + 3600), k["private"], "RS256", headers={"kid": kid}
    ),
    "not-yet-valid-past-leeway": lambda a, k, kid: jwt.encode(
        _claims(a, nbf=int(time.time()) + LEEWAY_S + 15), k["private"], "RS256", headers={"kid": kid}
    ),
    "wrong-issuer": lambda a, k, kid: jwt.encode(_claims(a, iss="evil"), k["private"], "RS256", headers={"kid": kid}),
    "no-issuer": lambda a, k, kid: jwt.encode(_claims(a, iss=None), k["private"], "RS256", headers={"kid": kid}),
    "wrong-audience": lambda a, k, kid: jwt.encode(
        _claims(a, aud="other-api"), k["private"], "RS256", headers={"kid": kid}
    ),
    "no-audience": lambda a, k, kid: jwt.encode(_claims(a, aud=None), k["private"], "RS256", headers={"kid": kid}),
    "no-expiry": lambda a, k, kid: jwt.encode(_claims(a, exp=None), k["private"], "RS256", headers={"kid": kid}),
    "no-subject": lambda a, k, kid: jwt.encode(_claims(a, sub=None), k["private"], "RS256", headers={"kid": kid}),
    "unknown-account": lambda a, k, kid: jwt.encode(
        _claims(a, sub=str(uuid.uuid4())), k["private"], "RS256", headers={"kid": kid}
    ),
    "tampered-payload": lambda a, k, kid: _tampered(a.token),
    "tampered-header": lambda a, k, kid: (
        _b64(orjson.dumps({"alg": "RS256", "typ": "JWT", "kid": kid, "x": 1})) + a.token[a.token.index(".") :]
    ),
    "oversized": lambda a, k, kid: jwt.encode(_claims(a, pad="x" * 9000), k["private"], "RS256", headers={"kid": kid}),
    "garbage": lambda a, k, kid: "not.a.jwt",
    "empty-segments": lambda a, k, kid: "..",
}


def _hs256_by_hand(claims: dict[str, Any], secret: bytes, kid: str | None) -> str:
    # pyjwt refuses to HMAC-sign with a PEM key, which is exactly the attack: do it by hand.
    import hashlib
    import hmac

    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(uuid.uuid4())
    return f"{header}.{_b64(orjson.dumps(claims))}.{signature}"


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_token_is_401(stack: Stack, account: Account, keys: dict[str, Any], kid: str, name: str) -> None:
    _assert_401(_post(stack, BAD_TOKENS[name](account, keys, kid)))


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "bearer", "Token abc", "Bearer a b c", "Bearer " + "x" * 100_000],
    ids=["missing", "empty", "bearer-only", "basic", "lowercase-only", "other-scheme", "spaces", "huge"],
)
def test_missing_or_malformed_header_is_401(stack: Stack, header: str | None) -> None:
    response = _post(stack, None, raw_header=header)
    if header is not None and len(header) > 50_000:
        # A server may refuse an oversized header line before the app sees it (431).
        assert response.status_code in (401, 431), response.status_code
        if response.status_code == 401:
            _assert_401(response)
        return
    _assert_401(response)


def test_clock_skew_within_the_leeway_is_tolerated(
    stack: Stack, account: Account, keys: dict[str, Any], kid: str
) -> None:
    """Documented: LEEWAY_S (30 s) of skew between the issuer's clock and the gateway's."""
    now = int(time.time())
    late = jwt.encode(_claims(account, exp=now - LEEWAY_S + 15), keys["private"], "RS256", headers={"kid": kid})
    early = jwt.encode(
        _claims(account, iat=now + 20, nbf=now + LEEWAY_S - 15), keys["private"], "RS256", headers={"kid": kid}
    )
    assert _post(stack, late).status_code == 200
    assert _post(stack, early).status_code == 200


def test_a_disabled_account_is_401_at_once_and_back_when_enabled(stack: Stack) -> None:
    account = stack.account(providers=("openai",))
    assert _post(stack, account.token).status_code == 200  # verified and cached
    control = stack.control()
    control.set_disabled(account.email, True)
    deadline = time.monotonic() + 10  # one event delivery, not the 30 s cache TTL
    while (response := _post(stack, account.token)).status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.05)
    _assert_401(response)
    assert "disabled" in error_of(response)["message"]
    control.set_disabled(account.email, False)
    deadline = time.monotonic() + 10
    while (response := _post(stack, account.token)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert response.status_code == 200
