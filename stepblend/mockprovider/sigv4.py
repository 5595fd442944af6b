"""The mock Bedrock's gate: an AWS Signature V4 `Authorization` header checked the way
AWS checks it, recomputed with botocore from what was received (method, path as
sent, the signed headers, the body) and the credentials the mock knows.

The mock knows one pair, AWS's documented example credentials
(docs.aws.amazon.com/IAM/latest/UserGuide/security-creds.html): a request signed with
them is accepted when its signature is right. As Bedrock answers (403, the type in
`x-amzn-errortype`):

    no or malformed Authorization        MissingAuthenticationTokenException /
                                         IncompleteSignatureException
    an access key id it does not know    UnrecognizedClientException
    (or one of `reject_keys`)
    a wrong signature (a wrong secret,   InvalidSignatureException
    a body or header changed after
    signing, another service's scope,
    a date 15 minutes or more away)
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

__all__ = ["EXAMPLE_ACCESS_KEY_ID", "EXAMPLE_SECRET_ACCESS_KEY", "check"]

EXAMPLE_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
EXAMPLE_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
_KNOWN = {EXAMPLE_ACCESS_KEY_ID: EXAMPLE_SECRET_ACCESS_KEY}
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)"
    r"/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_SKEW = timedelta(minutes=15)
_UNRECOGNIZED = "The security token included in the request is invalid."
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


def check(
    method: str, raw_path: str, headers: Mapping[str, str], body: bytes, reject_keys: Collection[str]
) -> tuple[str, str] | None:
    """(error type, message) when Bedrock would refuse the request's signature, else None."""
    authorization = headers.get("authorization", "")
    if not authorization:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    found = _AUTHORIZATION.match(authorization)
    if found is None:
        return (
            "IncompleteSignatureException",
            f"Authorization header requires a valid Credential: {authorization[:40]}…",
        )
    secret = _KNOWN.get(found["key"])
    if secret is None or found["key"] in reject_keys:
        return "UnrecognizedClientException", _UNRECOGNIZED
    signed = found["signed"].split(";")
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got '{amz_date[:40]}'."
    if abs(datetime.now(UTC) - signed_at) >= _SKEW:
        return "InvalidSignatureException", f"Signature expired: {amz_date} is now earlier or later than 15 minutes."
    if (
        found["service"] != "bedrock"
        or not _REGION.match(found["region"])
        or "host" not in signed
        or "x-amz-date" not in signed
        or amz_date[:8] != found["date"]
        or any(name not in headers for name in signed)
    ):
        return "InvalidSignatureException", _MISMATCH
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{raw_path}",
        data=body,
        headers={name: headers[name] for name in signed},
    )
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(found["key"], secret), found["service"], found["region"])
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if not hmac.compare_digest(str(expected), found["signature"]):
        return "InvalidSignatureException", _MISMATCH
    return None
