"""The minimal instance of a JSON schema (providers/schema_instance.py), checked with
jsonschema against hand-written schemas and the ones pydantic and the openai SDK emit."""

from __future__ import annotations

from typing import Literal, Optional

import jsonschema
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from providers.schema_instance import minimal_instance


class Address(BaseModel):
    city: str
    postcode: Optional[str]  # noqa: UP045 (pydantic's Optional is what apps write)


class Node(BaseModel):
    name: str
    children: list[Node]
    parent: Node | None


class Person(BaseModel):
    name: str = Field(min_length=8, max_length=12)
    age: int = Field(ge=18, lt=130)
    score: float = Field(gt=0.5)
    tags: list[str] = Field(min_length=2)
    kind: Literal["a", "b"]
    home: Address
    work: Address | None
    tree: Node
    either: int | str


HAND_WRITTEN = [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    {"type": "array", "items": {"type": "integer", "minimum": 3}, "minItems": 2},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "email", "maxLength": 40},
    {"type": "string", "minLength": 10},
    {"type": "string", "maxLength": 2},
    {"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 2},
    {"type": "integer", "minimum": 5, "multipleOf": 4},
    {"type": "integer", "maximum": -3},
    {"type": "boolean"},
    {"type": "null"},
    {"enum": ["red", "green"]},
    {"const": {"fixed": True}},
    {"type": ["null", "string"]},
    {"anyOf": [{"type": "null"}, {"type": "integer"}]},
    {"oneOf": [{"type": "string", "enum": ["x"]}, {"type": "integer"}]},
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]},
        ]
    },
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
    {"type": "object", "minProperties": 1, "additionalProperties": {"type": "integer"}},
    {
        "properties": {"inferred": {"items": {"type": "string"}, "minItems": 1}},
        "required": ["inferred"],
    },
    {
        "$defs": {
            "Leaf": {
                "type": "object",
                "properties": {"v": {"$ref": "#/$defs/V"}},
                "required": ["v"],
            },
            "V": {"type": "integer", "minimum": 7},
        },
        "type": "object",
        "properties": {"leaf": {"$ref": "#/$defs/Leaf", "description": "beside the ref"}},
        "required": ["leaf"],
    },
    {"definitions": {"X": {"type": "string"}}, "$ref": "#/definitions/X"},
]


@pytest.mark.parametrize("schema", HAND_WRITTEN, ids=range(len(HAND_WRITTEN)))
def test_the_instance_of_a_hand_written_schema_validates(schema):
    jsonschema.validate(minimal_instance(schema), schema)


@pytest.mark.parametrize("strict", [True, False], ids=["openai-strict", "pydantic"])
def test_the_instance_of_a_pydantic_model_schema_validates_and_parses(strict):
    schema = to_strict_json_schema(Person) if strict else Person.model_json_schema()

    value = minimal_instance(schema)

    jsonschema.validate(value, schema)
    person = Person.model_validate(value)
    assert 8 <= len(person.name) <= 12 and 18 <= person.age < 130 and person.score > 0.5
    assert len(person.tags) == 2 and person.kind == "a"


def test_a_recursive_model_ends_with_null_where_it_would_expand_itself():
    value = minimal_instance(to_strict_json_schema(Person))

    assert value["tree"] == {"name": "stub", "children": [], "parent": None}
    assert value["work"] == {"city": "stub", "postcode": "stub"}


def test_strings_say_the_given_text():
    assert minimal_instance({"type": "string"}, text="hello") == "hello"
    assert minimal_instance({"type": "object", "properties": {}, "required": []}) == {}


def test_a_schema_with_no_finite_instance_gives_up_rather_than_loops():
    schema = {
        "$defs": {
            "A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "required": ["a"]}
        },
        "$ref": "#/$defs/A",
    }

    value = minimal_instance(schema)

    depth = 0
    while isinstance(value, dict):
        value, depth = value["a"], depth + 1
    assert value is None and depth > 10
