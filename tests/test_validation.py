"""What the exporter relies on in pydantic's validation errors (exporter/validation.py): a pydantic release that
changes any of it fails here, not in a problem report."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel, ByteSize, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

import exporter
from exporter import config, models, webconfig
from exporter.sidecar import store
from exporter.validation import SCHEMA_TAG_PREFIXES, Problem, location, problems


def _errors(type_: Any, value: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(list[type_]).validate_json(json.dumps([value]))
    return caught.value


@pytest.mark.parametrize(
    ("type_", "value", "prefix"),
    [
        (Annotated[int, AfterValidator(lambda v: v)] | list[int], "x", "function-after["),
        (Annotated[int, Field(ge=1)] | Annotated[str, Field(min_length=2)], 0, "constrained-int"),
        (SecretStr | list[int], 5, "lax-or-strict["),
        (ByteSize | list[int], "x", "function-after["),
    ],
)
def test_union_members_are_tagged_in_the_location_and_left_out(type_: Any, value: object, prefix: str) -> None:
    error = _errors(type_, value)
    raw = [part for item in error.errors() for part in item["loc"]]
    assert any(isinstance(part, str) and part.startswith(prefix) for part in raw), raw
    assert any(isinstance(part, str) and part.startswith(SCHEMA_TAG_PREFIXES) for part in raw)
    assert {problem.location for problem in problems(error)} == {"[0]"}


def test_a_union_member_named_by_a_bare_type_cannot_be_told_from_a_key() -> None:
    assert {p.location for p in problems(_errors(int | str, [1]))} == {"[0].int", "[0].str"}


def test_locations_are_keys_and_indices_and_messages_lose_the_value_error_prefix() -> None:
    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n: Annotated[int, AfterValidator(_positive)]

    class Outer(BaseModel):
        items: list[Inner]
        labels: dict[str, int] = {}

    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"items": [{"n": 1}, {"n": -1, "extra": 1}], "labels": {"a": "b"}})
    assert problems(caught.value) == [
        Problem("items[1].n", "must be positive", "value_error"),
        Problem("items[1].extra", "Extra inputs are not permitted", "extra_forbidden"),
        Problem("labels.a", "Input should be a valid integer, unable to parse string as an integer", "int_parsing"),
    ]
    assert location(()) == "" and str(Problem("", "bad", "x")) == "(top level): bad"


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("must be positive")
    return value


def test_problems_never_carry_the_input() -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(dict[str, int]).validate_python({"key": "apikey:very-secret"})
    (problem,) = problems(caught.value)
    assert "very-secret" not in repr(problem)


def test_json_that_does_not_parse_is_its_own_kind() -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(list[int]).validate_json(b"[1,")
    assert problems(caught.value)[0].kind == "json_invalid"


def _unions(annotation: Any, where: str, seen: set[type]) -> list[str]:
    """Fields of the models reachable from ``annotation`` typed as a union of two or more types besides None."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unions(typing.get_args(annotation)[0], where, seen)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        found = [where] if len(members) > 1 else []
        return found + [u for a in members for u in _unions(a, where, seen)]
    if origin is not None:
        return [u for a in typing.get_args(annotation) for u in _unions(a, where, seen)]
    if not isinstance(annotation, type) or annotation in seen:
        return []
    seen.add(annotation)
    if issubclass(annotation, BaseModel):
        fields = {name: field.annotation for name, field in annotation.model_fields.items()}
    elif dataclasses.is_dataclass(annotation):
        fields = typing.get_type_hints(annotation, include_extras=True)
    else:
        return []
    return [u for name, hint in fields.items() for u in _unions(hint, f"{annotation.__name__}.{name}", seen)]


def test_the_exporters_models_have_no_union_a_location_tag_could_stay_in() -> None:
    seen: set[type] = set()
    found = [
        union
        for module in (config, webconfig, store, models)
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__
        for union in _unions(value, value.__name__, seen)
    ]
    assert found == []
    assert len(seen) > 20  # the walk reached the models


def test_only_the_adapter_reads_pydantics_error_details() -> None:
    package = Path(exporter.__file__).parent
    readers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if ".errors(" in path.read_text(encoding="utf-8") and path.name != "validation.py"
    ]
    assert readers == []
