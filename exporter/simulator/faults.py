"""Fault injection: make matching requests slow, fail, return garbage, or hang.

A fault matches by HTTP method (optional) and a glob on the decoded path (``/v0/pipelines/*/stats``).
``latency`` delays and lets the request continue (to the next fault or the normal answer); every other kind
decides the response. ``times`` limits how many requests a fault affects (``None``: until cleared).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

FaultKind = Literal["latency", "status", "html", "malformed", "truncated", "hang"]
KINDS: tuple[str, ...] = ("latency", "status", "html", "malformed", "truncated", "hang")

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
MALFORMED_JSON = b'{"id": "oops", "name": tru'


@dataclass
class Fault:
    kind: FaultKind
    path: str = "*"
    method: str | None = None
    seconds: float = 1.0
    """``latency``: how long to delay."""
    status: int = 500
    """``status``: the HTTP status returned (with a Feldera-style JSON error body)."""
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}")

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return fnmatchcase(path, self.path)

    def consume(self) -> None:
        if self.times is not None:
            self.times -= 1
