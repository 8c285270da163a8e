"""The type checker's exceptions are few and explained: ./scripts/test runs mypy strict over exporter/ (pyproject's
[tool.mypy]); each `type: ignore` there names the error it silences and says why on its line."""

from __future__ import annotations

import re
from pathlib import Path

import exporter

PACKAGE = Path(exporter.__file__).parent
IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<rest>.*)$")
EXPLAINED = re.compile(r"^\[[a-z-]+(, *[a-z-]+)*\]\s+#\s*\S.{9,}")


def test_every_type_ignore_names_its_error_and_its_reason() -> None:
    found = {
        f"{path.relative_to(PACKAGE)}:{number}": match.group("rest")
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if (match := IGNORE.search(line))
    }
    assert {where: rest for where, rest in found.items() if not EXPLAINED.match(rest)} == {}


def test_the_scan_tells_an_explained_ignore_from_a_bare_one() -> None:
    for line, explained in (
        ("x = f()  # type: ignore[assignment]  # one of the literal's values: checked above", True),
        ("x = f()  # type: ignore[assignment]", False),
        ("x = f()  # type: ignore", False),
        ("x = f()  # type: ignore  # no error code named", False),
    ):
        match = IGNORE.search(line)
        assert match is not None and bool(EXPLAINED.match(match.group("rest"))) is explained, line
