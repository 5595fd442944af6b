from __future__ import annotations

import base64

from services.billing.passwords import hash_password, verify_password


def test_hash_format_and_verification() -> None:
    stored = hash_password("correct horse")
    scheme, n, r, p, salt, key = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(key)) == 32
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct horse ")
    assert not verify_password(stored, "")


def test_each_hash_has_its_own_salt() -> None:
    assert hash_password("same") != hash_password("same")


def test_malformed_hashes_never_verify() -> None:
    good = hash_password("pw").split("$")
    for stored in [
        "",
        "pw",
        "bcrypt$" + "$".join(good[1:]),
        "$".join([*good[:4], "!!!", good[5]]),
        "$".join([good[0], "1000", *good[2:]]),  # n not a power of two
        "$".join([good[0], str(2**30), *good[2:]]),  # would need gigabytes
        "$".join([*good[:5], ""]),
    ]:
        assert not verify_password(stored, "pw"), stored
