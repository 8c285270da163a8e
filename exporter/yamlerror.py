"""A YAML syntax error as ``path:line:column: problem``, without the text of the document.

PyYAML's own message (``str(exc)``) quotes the offending line, and with it whatever is written there: a plain-text
password pasted into a file by mistake (``u: "hunter2`` with the quote left open) would reach the log or stderr.
The config file (:mod:`exporter.config`) and the web config (:mod:`exporter.webconfig`) both report syntax errors
with :func:`describe`, which keeps the position and PyYAML's statement of the problem (and of what it was reading)
but not the quoted line, nor a name PyYAML takes from the text: a value starting with ``!``, ``*`` or ``&`` is read
as a tag, alias or anchor, and a password can start so.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

_NAMED = re.compile(r"""\b(tag|alias|anchor|handle) ('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def _without_names(text: str) -> str:
    return _NAMED.sub(r"\1 (name not shown)", text)


def _position(mark: yaml.Mark) -> str:
    return f"{mark.line + 1}:{mark.column + 1}"


def describe(path: Path, exc: yaml.YAMLError) -> str:
    """``path:line:column: problem (context at line:column)``, from the error's fields rather than its text.

    >>> try:
    ...     yaml.safe_load('user: "hunter2\\n')
    ... except yaml.YAMLError as exc:
    ...     describe(Path("web.yml"), exc)
    'web.yml:2:1: found unexpected end of stream (while scanning a quoted scalar at 1:7)'
    """
    if isinstance(exc, yaml.reader.ReaderError):
        return f"{path}: {exc.reason} (character #x{exc.character:04x} at position {exc.position})"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"{path}: invalid YAML"
    mark = exc.problem_mark
    where = f"{path}:{_position(mark)}" if mark is not None else str(path)
    text = _without_names(exc.problem or "invalid YAML")
    if exc.context:
        at = f" at {_position(exc.context_mark)}" if exc.context_mark is not None else ""
        text += f" ({_without_names(exc.context)}{at})"
    return f"{where}: {text}"
