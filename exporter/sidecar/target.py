"""What the sidecar needs from core's per-target runtime (``exporter.poller.TargetRuntime`` satisfies it)."""

from __future__ import annotations

from typing import Protocol

from exporter.client import FelderaClient


class Target(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def client(self) -> FelderaClient: ...
