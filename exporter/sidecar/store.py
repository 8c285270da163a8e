"""The reset-watch state file: JSON, replaced atomically (temp file + fsync + rename), mode 0600.

Format (version 1)::

    {"version": 1, "watches": [{"name": "...", "target": "default", "pipeline": "...", "token": "...",
      "registered_at": 1714564800.0, "status": "pending", "finished_at": null, "last_checked": null}]}
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exporter import validation

STATES = ("pending", "completed", "invalid", "expired", "unknown", "unsupported")
FINAL_STATES = frozenset({"completed", "invalid", "expired", "unsupported"})


class StoredWatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    target: str = Field(min_length=1)
    pipeline: str = Field(min_length=1)
    token: str = Field(min_length=1, repr=False)
    registered_at: float
    status: Literal["pending", "completed", "invalid", "expired", "unknown", "unsupported"] = "pending"
    finished_at: float | None = None
    last_checked: float | None = None


class _StateDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    watches: list[StoredWatch]


class StateFileError(Exception):
    """The state file exists but cannot be read or is not a valid state document."""


def load(path: Path) -> list[StoredWatch]:
    """The watches in ``path``; an absent file is an empty list."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        document = _StateDocument.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise StateFileError(f"{path} is not a valid reset-watch state file: {_describe(exc)}") from exc
    names = [watch.name for watch in document.watches]
    if len(names) != len(set(names)):
        raise StateFileError(f"{path} is not a valid reset-watch state file: duplicate watch names")
    return document.watches


def save(path: Path, watches: list[StoredWatch]) -> None:
    """Replace ``path`` atomically: readers see the old or the new document, never a torn one."""
    data = _StateDocument(version=1, watches=watches).model_dump_json(indent=1).encode()
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def move_aside(path: Path) -> Path | None:
    """Keep a corrupt file for inspection instead of overwriting it with the next save."""
    aside = path.with_name(f"{path.name}.corrupt")
    try:
        os.replace(path, aside)
    except OSError:
        return None
    return aside


def _describe(exc: Exception) -> str:
    """Where the document is wrong, without echoing its content (it holds tokens)."""
    if isinstance(exc, ValidationError):
        first = validation.problems(exc)[0]
        return f"{first.location or 'document'}: {first.message}"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
