"""Tokens (SPEC.md §2): what verifies, and every way a token must not."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.config import Settings
from services.gateway.auth import Keyring, Verifier
from services.gateway.errors import ApiError

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def settings(**overrides: object) -> Settings:
    return Settings.from_env().model_copy(
        update={
            "jwt_secret": SECRET,
            "jwt_issuer": "stepblend",
            "jwt_audience": "",
            "jwt_private_key_file": "",
            "jwt_public_key_file": "",
            "jwt_previous_secret": "",
            "jwt_previous_public_key_file": "",
            **overrides,
        }
    )


def rsa_files(tmp_path: Path, name: str) -> tuple[str, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path, public_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    private_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return str(private_path), str(public_path)


def account_id(verifier: Verifier, authorization: str | None) -> str:
    return asyncio.run(verifier.account_id(authorization))


def rejects(verifier: Verifier, token: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        account_id(verifier, f"Bearer {token}")
    assert caught.value.status == 401 and caught.value.type == "authentication_error"
    return caught.value


def test_hs256_token_verifies_to_its_account() -> None:
    keyring = Keyring.from_settings(settings())
    token = keyring.issue("acct-1")
    assert jwt.get_unverified_header(token)["kid"] == keyring.current.kid
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="stepblend")
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600
    assert account_id(Verifier(keyring), f"Bearer {token}") == "acct-1"


def now_claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "a", "iat": now, "exp": now + 3600, "iss": "stepblend", **extra}


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(now_claims(exp=int(time.time()) - 3600), SECRET, "HS256"),
        jwt.encode(now_claims(nbf=int(time.time()) + 3600), SECRET, "HS256"),
        jwt.encode(now_claims(iss="other"), SECRET, "HS256"),
        jwt.encode(now_claims(), "wrong-" + SECRET, "HS256"),
        jwt.encode(now_claims(), None, "none"),
        jwt.encode({k: v for k, v in now_claims().items() if k != "sub"}, SECRET, "HS256"),
        jwt.encode({k: v for k, v in now_claims().items() if k != "exp"}, SECRET, "HS256"),
        "not.a.jwt",
        "x" * 9000,
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-issuer",
        "wrong-secret",
        "alg-none",
        "no-subject",
        "no-expiry",
        "garbage",
        "oversized",
    ],
)
def test_bad_tokens_are_401(token: str) -> None:
    rejects(Verifier(Keyring.from_settings(settings())), token)


def test_tampered_payload_is_401() -> None:
    token = Keyring.from_settings(settings()).issue("acct-1")
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    rejects(Verifier(Keyring.from_settings(settings())), f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer "])
def test_missing_or_malformed_header_is_401(header: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        account_id(Verifier(Keyring.from_settings(settings())), header)
    assert caught.value.status == 401


def test_audience_when_configured() -> None:
    keyring = Keyring.from_settings(settings(jwt_audience="team-a"))
    assert account_id(Verifier(keyring), f"Bearer {keyring.issue('acct')}") == "acct"
    other = Keyring.from_settings(settings(jwt_audience="team-b")).issue("acct")
    rejects(Verifier(keyring), other)
    rejects(Verifier(keyring), jwt.encode(now_claims(), SECRET, "HS256"))


def test_rs256_and_no_hs_rs_confusion(tmp_path: Path) -> None:
    private, public = rsa_files(tmp_path, "current")
    keyring = Keyring.from_settings(settings(jwt_secret="", jwt_private_key_file=private, jwt_public_key_file=public))
    token = keyring.issue("acct-rs")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    verifier = Verifier(keyring)
    assert account_id(verifier, f"Bearer {token}") == "acct-rs"

    # The public key used as an HMAC secret under the same kid must not verify.
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = (
        b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": keyring.current.kid}))
        + b"."
        + b64(orjson.dumps(now_claims()))
    )
    mac = hmac.new(Path(public).read_bytes(), signing_input, hashlib.sha256).digest()
    rejects(verifier, (signing_input + b"." + b64(mac)).decode())
    # A verify-only gateway (public key alone) accepts tokens but cannot issue.
    verify_only = Keyring.from_settings(settings(jwt_secret="", jwt_public_key_file=public))
    assert account_id(Verifier(verify_only), f"Bearer {token}") == "acct-rs"
    with pytest.raises(ValueError):
        verify_only.issue("x")


def test_rotation_keeps_previous_tokens_verifying(tmp_path: Path) -> None:
    old = Keyring.from_settings(settings())
    old_token = old.issue("acct")
    private, public = rsa_files(tmp_path, "new")
    rotated = Keyring.from_settings(
        settings(jwt_secret="", jwt_private_key_file=private, jwt_public_key_file=public, jwt_previous_secret=SECRET)
    )
    verifier = Verifier(rotated)
    assert account_id(verifier, f"Bearer {old_token}") == "acct"
    assert account_id(verifier, f"Bearer {rotated.issue('acct2')}") == "acct2"
    # Once the previous key is dropped, its tokens stop verifying.
    dropped = Keyring.from_settings(settings(jwt_secret="", jwt_private_key_file=private, jwt_public_key_file=public))
    rejects(Verifier(dropped), old_token)
