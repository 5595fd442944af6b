r"""Provider keys with several fields (SPEC.md §11): Azure OpenAI's
`{"api_key", "endpoint", "deployments"}` and AWS Bedrock's `{"access_key_id",
"secret_access_key", "region"}`, declared per vendor in vendors.toml.

A vendor's `[providers.<name>.fields]` table names each field and its kind:

    secret       a credential: a non-empty string without whitespace; sealed with
                 the rest, and shown masked (`…abcd`) wherever the key is listed
    endpoint     the account's own https base URL; `hosts` lists the host patterns
                 it must match (`*.openai.azure.com`: one DNS label, then the
                 suffix), so an account cannot point StepBlend at an address of its
                 choosing (no SSRF: no http, IP, localhost, port, path or query)
    deployments  a table of catalog id -> the provider's name for it (Azure's
                 deployment names); the model's path segment on the provider's API
    region       a cloud region name (`us-east-1`): it goes into the vendor's
                 templated base URL (`https://bedrock-runtime.{region}.amazonaws.com`),
                 so it must match `^[a-z]{2}(-[a-z]+)+-\d$` — never a host of the
                 account's choosing

A secret field may also give a `pattern` its value must match (an AWS access key
id), and any field may be `optional` (AWS's session token of temporary credentials).

The whole object is sealed as one JSON secret; `check` validates what an account
sends (a `KeyFieldError` names the field), `shown` is what listing it shows, and
`bind` is what one request on one model needs (a `SecretStr` key, the endpoint and
the deployment). A vendor whose fields have no `api_key` (Bedrock) authenticates
with several of them at once: its "key" is then the whole stored object, which the
adapter's signing step reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import SecretStr

__all__ = ["Bound", "FieldSpec", "KeyFieldError", "KeyFields", "NoDeployment", "mask_secret"]

Kind = Literal["secret", "endpoint", "deployments", "region"]
_KINDS: tuple[Kind, ...] = ("secret", "endpoint", "deployments", "region")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_MAX_SECRET_CHARS = 4096
_MAX_DEPLOYMENTS = 200
# A DNS label (what the `*` of a host pattern stands for).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Azure deployment names: letters, digits, `-`, `_`, `.`; they are a URL path segment.
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")


class KeyFieldError(ValueError):
    """A multi-field key that does not validate; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NoDeployment(LookupError):
    """The account's key maps no deployment to this catalog id."""


def mask_secret(value: str) -> str:
    """`…abcd`: the last 4 characters of a long secret; a short one shows nothing."""
    return f"…{value[-4:]}" if len(value) >= 16 else "****"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    # For `endpoint`: the host patterns, e.g. `*.openai.azure.com`.
    hosts: tuple[str, ...] = ()
    # For `secret`: what its value must match, if anything (an AWS access key id).
    pattern: re.Pattern[str] | None = None
    optional: bool = False

    def host_pattern(self) -> re.Pattern[str]:
        parts = [re.escape(host).replace(r"\*", _LABEL) for host in self.hosts]
        return re.compile(rf"^(?:{'|'.join(parts)})$")


@dataclass(frozen=True)
class Bound:
    """What one attempt needs of a multi-field key."""

    base_url: str
    deployment: str
    api_key: SecretStr
    # The key's region (Bedrock's), "" when it has none.
    region: str = ""


@dataclass(frozen=True)
class KeyFields:
    specs: tuple[FieldSpec, ...]

    @classmethod
    def parse(cls, raw: Any) -> KeyFields:
        """From a vendors.toml `fields` table; ValueError/TypeError naming what is wrong."""
        if not isinstance(raw, dict) or not raw:
            raise TypeError("fields must be a table of field -> { kind = ... }")
        specs: list[FieldSpec] = []
        for name, row in raw.items():
            if not isinstance(row, dict) or row.get("kind") not in _KINDS:
                raise ValueError(f"field {name!r} needs kind = one of {', '.join(_KINDS)}")
            unknown = set(row) - {"kind", "hosts", "pattern", "optional"}
            if unknown:
                raise ValueError(f"field {name!r}: unknown keys {sorted(unknown)}")
            hosts = row.get("hosts", [])
            if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
                raise TypeError(f"field {name!r}: hosts must be a list of host patterns")
            if row["kind"] == "endpoint" and not hosts:
                raise ValueError(f"field {name!r}: an endpoint needs its allowed hosts")
            pattern = row.get("pattern")
            if pattern is not None and (not isinstance(pattern, str) or row["kind"] != "secret"):
                raise TypeError(f"field {name!r}: pattern is a regular expression, for a secret")
            optional = row.get("optional", False)
            if not isinstance(optional, bool):
                raise TypeError(f"field {name!r}: optional must be true or false")
            compiled = re.compile(pattern) if pattern is not None else None
            specs.append(FieldSpec(name, row["kind"], tuple(h.lower() for h in hosts), compiled, optional))
        secrets = [spec for spec in specs if spec.kind == "secret" and not spec.optional]
        if not secrets:
            raise ValueError("fields must include a required secret (api_key, kind = secret)")
        if "api_key" in raw and raw["api_key"].get("kind") != "secret":
            raise ValueError("api_key must be of kind secret")
        for kind in ("endpoint", "deployments", "region"):
            if sum(spec.kind == kind for spec in specs) > 1:
                raise ValueError(f"at most one field of kind {kind}")
        return cls(tuple(specs))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    def _of(self, kind: Kind) -> FieldSpec | None:
        return next((spec for spec in self.specs if spec.kind == kind), None)

    @property
    def has_endpoint(self) -> bool:
        return self._of("endpoint") is not None

    @property
    def has_region(self) -> bool:
        return self._of("region") is not None

    def masked(self, shown: Mapping[str, Any]) -> str:
        """The one masked value listing shows for the key: `api_key`'s, else the first
        secret field's (`shown`'s, already masked)."""
        name = "api_key" if "api_key" in self.names else next(s.name for s in self.specs if s.kind == "secret")
        return str(shown.get(name) or "")

    def check(self, text: str) -> str:
        """The JSON secret to seal, from what the account sent (a JSON object);
        `KeyFieldError` naming the first field that is missing, unknown or wrong."""
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            raise KeyFieldError(self.names[0], f"this provider takes an object with {', '.join(self.names)}")
        for name in obj:
            if name not in self.names:
                raise KeyFieldError(str(name)[:64], f"unknown field (this provider takes {', '.join(self.names)})")
        clean: dict[str, Any] = {}
        for spec in self.specs:
            if spec.name not in obj or obj[spec.name] is None:
                if spec.optional:
                    continue
                raise KeyFieldError(spec.name, "is required")
            clean[spec.name] = _checked(spec, obj[spec.name])
        return orjson.dumps(clean).decode()

    def shown(self, secret: str) -> dict[str, Any]:
        """The stored object as its owner sees it: secret fields masked."""
        obj = orjson.loads(secret)
        return {
            spec.name: mask_secret(obj[spec.name]) if spec.kind == "secret" else obj.get(spec.name)
            for spec in self.specs
            if spec.name in obj
        }

    def bind(self, secret: SecretStr, model: str) -> Bound:
        """The endpoint, the deployment of catalog id `model` ("" for a key without
        deployments), the key and the region; `NoDeployment`."""
        try:
            obj = orjson.loads(secret.get_secret_value())
            endpoint, deployments = self._of("endpoint"), self._of("deployments")
            # "" when the key maps no deployments: the catalog's upstream model is called.
            deployment = ""
            if deployments is not None:
                deployment = obj[deployments.name].get(model) or ""
            base_url = obj[endpoint.name] if endpoint is not None else ""
            region = self._of("region")
            region_name = obj[region.name] if region is not None else ""
            # Without an api_key, the adapter signs with several fields: all of them.
            api_key = SecretStr(obj["api_key"]) if "api_key" in self.names else secret
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            # Never the text: it is the secret.
            raise NoDeployment("the stored key is not the object this provider takes; connect it again") from None
        if deployments is not None and not deployment:
            raise NoDeployment(f"the account's key maps no deployment to {model}")
        if region is not None and not (isinstance(region_name, str) and _REGION.match(region_name)):
            raise NoDeployment("the stored key's region is not a region name; connect it again")
        return Bound(base_url, deployment, api_key, region_name)


def _checked(spec: FieldSpec, value: Any) -> Any:
    if spec.kind == "secret":
        if not isinstance(value, str) or not value.strip():
            raise KeyFieldError(spec.name, "must be a non-empty string")
        value = value.strip()
        if len(value) > _MAX_SECRET_CHARS or any(c.isspace() for c in value):
            raise KeyFieldError(spec.name, "is not a valid API key")
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            raise KeyFieldError(spec.name, "is not in this provider's format")
        return value
    if spec.kind == "endpoint":
        return _endpoint(spec, value)
    if spec.kind == "region":
        if not isinstance(value, str) or not _REGION.match(value.strip()):
            raise KeyFieldError(spec.name, "must be a region name such as us-east-1")
        return value.strip()
    return _deployments(spec, value)


def _endpoint(spec: FieldSpec, value: Any) -> str:
    allowed = " or ".join(f"https://{host}" for host in spec.hosts)
    wrong = KeyFieldError(spec.name, f"must be an {allowed} URL")
    if not isinstance(value, str):
        raise wrong
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise wrong from None
    host = (parts.hostname or "").lower()
    if (
        parts.scheme != "https"
        or parts.username is not None
        or parts.password is not None
        or port not in (None, 443)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or not spec.host_pattern().match(host)
    ):
        raise wrong
    return f"https://{host}"


def _deployments(spec: FieldSpec, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not value:
        raise KeyFieldError(spec.name, "must be an object of catalog model id -> deployment name")
    if len(value) > _MAX_DEPLOYMENTS:
        raise KeyFieldError(spec.name, f"at most {_MAX_DEPLOYMENTS} deployments")
    out: dict[str, str] = {}
    for model, deployment in value.items():
        if not _MODEL_ID.match(str(model)):
            raise KeyFieldError(spec.name, f"{str(model)[:80]!r} is not a model id")
        if not isinstance(deployment, str) or not _DEPLOYMENT.match(deployment):
            raise KeyFieldError(
                spec.name, f"the deployment of {model} must be a name of letters, digits, '-', '_' and '.'"
            )
        out[str(model)] = deployment
    return out
