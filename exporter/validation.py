"""pydantic's validation errors as the exporter reports them, in one place (``tests/test_validation.py`` pins it).

Every :class:`pydantic.ValidationError` the exporter reads (configuration, web config, reset-watch state file,
Feldera's answers) goes through :func:`problems`: one :class:`Problem` per error, its ``location`` written as a
person finds it in the document (``targets[0].timeout``). pydantic's error locations mix the document's keys and
indices with tags of its own schema: the member of a union an error came from, named like
``function-after[_validate(), int]``, ``constrained-int``, ``json-or-python[...]`` or ``list[int]``. Those tags
are not part of pydantic's documented API; :func:`location` leaves out every part shaped like them (a prefix
of :data:`SCHEMA_TAG_PREFIXES`, or brackets), which also leaves out a key that contains ``[``. A member named
by a bare type (``int``, ``str``, a model's name) cannot be told from a key by its text and stays: the
exporter's models have no unions but with ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pydantic import ValidationError

SCHEMA_TAG_PREFIXES = ("function-", "constrained-", "json-or-python", "lax-or-strict")
"""How pydantic (2.6 to 2.14) starts the location tags of a union's members built from validators, constraints
and types that parse JSON and Python apart."""


class Problem(NamedTuple):
    location: str
    """Keys and indices (``targets[0].timeout``); empty for the document itself."""
    message: str
    """pydantic's message, without its ``Value error, `` prefix (the text a validator raised)."""
    kind: str
    """pydantic's error type (``missing``, ``extra_forbidden``, ``json_invalid``, ...)."""

    def __str__(self) -> str:
        return f"{self.location or '(top level)'}: {self.message}"


def location(loc: Sequence[int | str]) -> str:
    """``("targets", 0, "timeout")`` -> ``targets[0].timeout``, without pydantic's schema tags."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith(SCHEMA_TAG_PREFIXES) or "[" in part:
            continue
        else:
            text += f".{part}" if text else part
    return text


def problems(error: ValidationError) -> list[Problem]:
    """Every error of ``error``, in pydantic's order, without the input values (they may hold secrets)."""
    return [
        Problem(location(item["loc"]), item["msg"].removeprefix("Value error, "), item["type"])
        for item in error.errors(include_url=False, include_input=False)
    ]


def describe(error: ValidationError, most: int | None = None) -> str:
    """The problems on one line, for a log line or an exception message; with ``most``, the first ``most`` of them
    and how many more there were (an answer of a million bad entries makes a million problems)."""
    found = problems(error)
    shown = "; ".join(str(problem) for problem in found[:most])
    if most is not None and len(found) > most:
        shown += f"; and {len(found) - most} more"
    return shown
