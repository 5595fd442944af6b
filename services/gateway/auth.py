"""StepBlend's JWTs: HS256 signed with STEPBLEND_JWT_SECRET, issuer `stepblend`.

Verification is on every request, so verified tokens are cached (bounded) until
they expire; the signature is never skipped for a token not seen before.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import jwt

from .errors import unauthenticated

ALGORITHM = "HS256"
LEEWAY_S = 30  # tolerated clock skew between the issuer and this gateway


def issue(secret: str, account_id: str, issuer: str = "stepblend", lifetime_s: int = 30 * 24 * 3600) -> str:
    now = int(time.time())
    claims = {"sub": account_id, "iat": now, "exp": now + lifetime_s, "iss": issuer}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


class Verifier:
    def __init__(self, secret: str, issuer: str, cache_size: int = 10_000) -> None:
        if not secret:
            raise ValueError("STEPBLEND_JWT_SECRET is not set")
        self._secret = secret
        self._issuer = issuer
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._cache_size = cache_size

    def account_id(self, authorization: str | None) -> str:
        """The account id (`sub`) of a valid `Authorization: Bearer <jwt>` header."""
        if not authorization:
            raise unauthenticated("Missing bearer token: send your StepBlend JWT as the API key.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated("Malformed Authorization header: expected 'Bearer <token>'.")
        cached = self._cache.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        account_id, exp = self._verify(token)
        self._cache[token] = (account_id, exp)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return account_id

    def _verify(self, token: str) -> tuple[str, float]:
        if len(token) > 8192:
            raise unauthenticated("Invalid token.")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": ["sub", "exp", "iat", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthenticated("Token expired.") from exc
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"Invalid token: {exc}.") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise unauthenticated("Invalid token: no subject.")
        return sub, float(claims["exp"])

    def clear(self) -> None:
        """Drop every cached verification (an account was disabled or changed)."""
        self._cache.clear()
