"""JSON Schema (what OpenAI clients send as a tool's `parameters` and a
`response_format`'s `json_schema.schema`) → Gemini's `Schema`, the OpenAPI 3.0
subset `functionDeclarations[].parameters` and `generationConfig.responseSchema`
take (ai.google.dev/api/caching#Schema).

Kept: type, format (the ones Gemini knows), title, description, enum (strings),
properties, required, items, min/maxItems, min/maxProperties, min/maxLength,
pattern, minimum, maximum, default, example, anyOf, nullable.
Rewritten:
- `type: ["string", "null"]` → `type: STRING, nullable: true`; several non-null
  types → `anyOf`; an `anyOf`/`oneOf` member `{"type": "null"}` → `nullable`
  (`oneOf` is read as `anyOf`: Gemini has no exclusive choice);
- `$ref` to `#/$defs/…` or `#/definitions/…` is inlined (Pydantic's nested models);
  a recursive one is refused;
- `allOf` of one schema is that schema; `const` (a string) is a one-value `enum`;
- `additionalProperties: false` (OpenAI's strict mode) is dropped: Gemini never adds
  properties a schema does not name;
- annotations Gemini does not take ($schema, $id, $comment, examples, deprecated…)
  and string formats it does not know (email, uri…) are dropped;
- every object of a response schema gets `propertyOrdering` in the client's key
  order, which Gemini otherwise sorts.
Anything else that constrains values (a non-string enum, `not`, `allOf` of several,
`additionalProperties` as a schema, `multipleOf`, `prefixItems`…) is refused with a
400 naming where it is: dropping it would let an answer through that the client's
schema rejects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.providers.adapters.base import RequestRefused

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
_COPIED = (
    "title",
    "description",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "default",
    "example",
    "required",
)
_DROPPED = frozenset(
    {
        "$schema", "$id", "$comment", "$defs", "definitions", "examples", "deprecated", "readOnly", "writeOnly",
        "contentMediaType", "contentEncoding", "strict",
    }
)  # fmt: skip
_FORMATS = frozenset({"date-time", "enum", "float", "double", "int32", "int64"})
_MAX_DEPTH = 32


def to_gemini(schema: Any, where: str, *, ordered: bool = False) -> dict[str, Any]:
    """Gemini's form of a JSON Schema object; `RequestRefused` naming `where` and the
    keyword it cannot express. `ordered` adds `propertyOrdering` (response schemas)."""
    if not isinstance(schema, dict):
        raise RequestRefused(f"{where} must be a JSON schema object", where)
    defs = {**_defs(schema, "definitions"), **_defs(schema, "$defs")}
    return _Converter(defs, where, ordered).convert(schema, where, (), 0)


def _defs(schema: Mapping[str, Any], key: str) -> dict[str, Any]:
    found = schema.get(key)
    if not isinstance(found, dict):
        return {}
    prefix = f"#/{key}/"
    return {prefix + name: value for name, value in found.items()}


class _Converter:
    def __init__(self, defs: dict[str, Any], root: str, ordered: bool) -> None:
        self._defs = defs
        self._root = root
        self._ordered = ordered

    def convert(self, schema: Any, at: str, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        if not isinstance(schema, dict):
            raise RequestRefused(f"{at} must be a schema object", self._root)
        if depth > _MAX_DEPTH:
            raise RequestRefused(f"{at}: the schema nests deeper than {_MAX_DEPTH} levels", self._root)
        while "$ref" in schema:
            ref = schema["$ref"]
            if ref in refs:
                raise self._refuse(at, "$ref", "Gemini cannot express a recursive schema")
            refs = (*refs, ref)
            schema = self._resolved(schema, at)
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _DROPPED:
                continue
            if key in _COPIED:
                out[key] = value
            elif key == "type":
                self._type(value, at, out)
            elif key == "format":
                if value in _FORMATS:
                    out["format"] = value
            elif key == "nullable":
                out["nullable"] = bool(value)
            elif key in ("enum", "const"):
                values = value if key == "enum" else [value]
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise self._refuse(at, key, "Gemini takes enums of strings only")
                out["enum"] = values
            elif key == "properties":
                out["properties"] = self._properties(value, at, refs, depth)
                if self._ordered and isinstance(value, dict) and len(value) > 1:
                    out["propertyOrdering"] = list(value)
            elif key == "items":
                out["items"] = self.convert(value, f"{at}.items", refs, depth + 1)
            elif key in ("anyOf", "oneOf"):
                self._any_of(value, f"{at}.{key}", refs, depth, out)
            elif key == "allOf":
                if not isinstance(value, list) or len(value) != 1:
                    raise self._refuse(at, key, "Gemini has no allOf of several schemas")
                out.update(self.convert(value[0], f"{at}.allOf[0]", refs, depth + 1))
            elif key == "additionalProperties":
                if value is not False and value is not True:
                    raise self._refuse(at, key, "Gemini cannot constrain additional properties")
            else:
                raise self._refuse(at, key, "Gemini's schema has no such keyword")
        return out

    def _resolved(self, schema: dict[str, Any], at: str) -> dict[str, Any]:
        ref = schema["$ref"]
        target = self._defs.get(ref) if isinstance(ref, str) else None
        if not isinstance(target, dict):
            raise self._refuse(at, "$ref", f"only references to this schema's $defs are supported, not {ref!r}")
        # Siblings of $ref (a description) apply on top of the definition.
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}

    def _type(self, value: Any, at: str, out: dict[str, Any]) -> None:
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(name, str) for name in names):
            raise self._refuse(at, "type", "a type must be a name or a list of names")
        kept = [name for name in names if name != "null"]
        if len(kept) < len(names):
            out["nullable"] = True
        unknown = [name for name in kept if name not in _TYPES]
        if unknown or not kept:
            raise self._refuse(at, "type", f"Gemini has no type {(unknown or ['null'])[0]!r} on its own")
        if len(kept) == 1:
            out["type"] = _TYPES[kept[0]]
        else:
            out["anyOf"] = [{"type": _TYPES[name]} for name in kept]

    def _properties(self, value: Any, at: str, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._refuse(at, "properties", "properties must be an object")
        return {name: self.convert(prop, f"{at}.properties.{name}", refs, depth + 1) for name, prop in value.items()}

    def _any_of(self, value: Any, at: str, refs: tuple[str, ...], depth: int, out: dict[str, Any]) -> None:
        if not isinstance(value, list) or not value:
            raise RequestRefused(f"{at} must be a non-empty array of schemas", self._root)
        members = []
        for i, member in enumerate(value):
            if isinstance(member, dict) and member.get("type") == "null" and len(member) == 1:
                out["nullable"] = True
            else:
                members.append(self.convert(member, f"{at}[{i}]", refs, depth + 1))
        if len(members) == 1:
            out.update(members[0])
        elif members:
            out["anyOf"] = members

    def _refuse(self, at: str, keyword: str, why: str) -> RequestRefused:
        return RequestRefused(f"{at}: '{keyword}' is not supported with Gemini models ({why})", self._root)
