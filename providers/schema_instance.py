"""A minimal value valid against a JSON schema: what the stub answers for structured output
(`response_format: json_schema`) and fills tool-call arguments with.

It covers what clients send: the OpenAI SDK's strict schemas from pydantic models (every
property required, `additionalProperties: false`, `$defs` with `#/$defs/...` refs,
`anyOf` with `{"type": "null"}` for optional fields), hand-written schemas (`enum`,
`const`, `type` lists, `minItems`, `minLength`, numeric bounds, common string formats),
and instructor's / LangChain's. Only required properties are filled, so a recursive
model ends, and a nullable value that would expand a model inside itself is null (so is
any nullable value past `MAX_DEPTH`). Not covered (the value may then not
validate): `pattern`, `not`, `if`/`then`, `multipleOf` other than for integers, and
`uniqueItems` with `minItems` over 1.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 12
_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "duration": "P0D",
    "email": "stub@example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def minimal_instance(schema: Any, *, text: str = "stub") -> Any:
    """A value valid against `schema`; strings say `text` (cut or padded to their bounds)."""
    return _Generator(schema, text).value(schema, 0)


class _Generator:
    def __init__(self, root: Any, text: str) -> None:
        self.root = root
        self.text = text or "stub"
        self.active: list[str] = []  # the $refs being expanded: a recursive model's path

    def value(self, schema: Any, depth: int) -> Any:
        if depth > 4 * MAX_DEPTH:  # a schema with no finite instance: give up, not loop
            return None
        if schema is True or not isinstance(schema, dict):
            return self.text if schema is True or schema is None else None
        ref = schema.get("$ref")
        if isinstance(ref, str):
            self.active.append(ref)
            try:
                return self._value(self._resolved(schema), depth)
            finally:
                self.active.pop()
        return self._value(schema, depth)

    def _value(self, schema: dict, depth: int) -> Any:
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for word in ("anyOf", "oneOf"):
            if isinstance(schema.get(word), list) and schema[word]:
                return self.value(self._branch(schema[word], depth), depth + 1)
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            return self._all_of(schema, depth)
        kind = _kind(schema, nullable_first=depth >= MAX_DEPTH)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return self._string(schema)

    def _resolved(self, schema: dict) -> dict:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        target: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            return {}
        # Keywords beside a $ref (pydantic puts `description` or `default` there) apply too.
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return self._resolved(merged) if "$ref" in target else merged

    def _branch(self, branches: list, depth: int) -> Any:
        """The first branch that is not null, unless it would recurse into a model being
        expanded (a tree's optional parent) or the value is deep already: then null."""
        nulls = [b for b in branches if isinstance(b, dict) and b.get("type") == "null"]
        others = [b for b in branches if b not in nulls]
        if nulls and (depth >= MAX_DEPTH or all(self._recurses(b) for b in others)):
            return nulls[0]
        return (others or nulls)[0]

    def _recurses(self, branch: Any) -> bool:
        return isinstance(branch, dict) and branch.get("$ref") in self.active

    def _all_of(self, schema: dict, depth: int) -> Any:
        parts = [self.value(part, depth + 1) for part in schema["allOf"]]
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        if rest.get("properties") or rest.get("type") == "object":
            parts.append(self._object(rest, depth))
        if parts and all(isinstance(part, dict) for part in parts):
            merged: dict = {}
            for part in parts:
                merged.update(part)
            return merged
        return parts[0] if parts else None

    def _object(self, schema: dict, depth: int) -> dict:
        properties = schema.get("properties") or {}
        result = {}
        for name in schema.get("required") or ():
            result[name] = self.value(properties.get(name, {}), depth + 1)
        extra = schema.get("additionalProperties")
        for index in range(len(result), int(schema.get("minProperties") or 0)):
            spare = next((n for n in properties if n not in result), None)
            if spare is not None:
                result[spare] = self.value(properties[spare], depth + 1)
            elif extra is not False:
                result[f"key{index}"] = self.value(
                    extra if isinstance(extra, dict) else {}, depth + 1
                )
        return result

    def _array(self, schema: dict, depth: int) -> list:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft-04 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        result = [self.value(item, depth + 1) for item in prefix or ()]
        wanted = int(schema.get("minItems") or 0)
        while len(result) < wanted:
            result.append(self.value(items if items is not None else {}, depth + 1))
        return result

    def _string(self, schema: dict) -> str:
        text = _FORMATS.get(str(schema.get("format")), self.text)
        least = int(schema.get("minLength") or 0)
        if len(text) < least:
            text = (text * (least // max(len(text), 1) + 1))[:least]
        most = schema.get("maxLength")
        if isinstance(most, int) and len(text) > most:
            text = text[:most]
        return text


def _kind(schema: dict, *, nullable_first: bool) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str)]
        if nullable_first and "null" in kinds:
            return "null"
        kind = next((k for k in kinds if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _number(schema: dict, *, integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    low_x, high_x = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if integer else 0.5
    value: float = 0
    if isinstance(low, int | float) and not isinstance(low, bool):
        value = max(value, low)
    if isinstance(low_x, int | float) and not isinstance(low_x, bool) and value <= low_x:
        value = low_x + step
    if isinstance(high, int | float) and not isinstance(high, bool):
        value = min(value, high)
    if isinstance(high_x, int | float) and not isinstance(high_x, bool) and value >= high_x:
        value = high_x - step
        if isinstance(low_x, int | float) and value <= low_x:
            value = (low_x + high_x) / 2
    if integer:
        value = math.ceil(value)
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int) and multiple > 0 and value % multiple:
            value += multiple - value % multiple
        return int(value)
    return value
