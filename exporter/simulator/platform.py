"""What the simulated server's build decides: its edition, its version as each endpoint spells it, and which API
features that version serves (upstream files named beside each).

- ``GET /v0/config``'s ``version`` is the release alone, ``X.Y.Z`` (``CARGO_PKG_VERSION``;
  ``crates/pipeline-manager/src/api/endpoints/config.rs``, ``Configuration::gather``), on every edition.
- A pipeline's ``platform_version`` is the platform version of the build that compiled it:
  ``X.Y.Z+enterprise`` or ``X.Y.Z+enterprise.SUFFIX`` on Enterprise, ``X.Y.Z`` or ``X.Y.Z+SUFFIX`` on the
  open-source edition (``crates/pipeline-manager/src/config.rs``, ``default_platform_version``).
- ``edition`` is ``Enterprise`` or ``Open source`` (``config.rs`` of the endpoints); the official client 0.369 also
  knows ``EnterpriseDev`` (``feldera/rest/feldera_config.py``), from newer servers.
- ``GET .../reset_status``: open-source 0.290.0-0.297.0 route it to a stub answering 400 ``NotSupported``
  (``crates/adapters/src/server.rs`` at v0.297.0, ``reset_status``); commit 2a950dbc7 (first in v0.298.0) removed
  the route, so later open-source servers answer 404 without an error code. Servers that implement resets (the
  seed's 200/400/410) are taken to be the Enterprise ones.
- ``GET .../stats?include_connector_errors=true`` adds the connectors' error lists from v0.292.0 on
  (``crates/feldera-types/src/query_params.rs``, ``StatsParams``); older servers ignore the parameter.
- ``GET .../checkpoint/sync_status`` has no ``running`` list up to 0.337 (``crates/feldera-types/src/checkpoint.rs``,
  ``CheckpointSyncStatus``); the official client 0.369 reads one (``feldera/pipeline.py``,
  ``sync_checkpoint_status``), so versions after 0.337 serve it here.
- Output connectors can be paused (``POST .../views/{v}/connectors/{c}/pause``) and report ``paused`` in newer
  servers only: up to 0.337 an output connector has no such field (``crates/feldera-types/src/adapter_stats.rs``,
  ``ExternalOutputEndpointStatus``); the official client 0.369 reads it and treats it as absent from "pipelines that
  predate pausable output connectors" (``feldera/stats.py``, ``OutputEndpointStatus``), so versions after 0.337
  report it here.
"""

from __future__ import annotations

import re
from typing import Literal

Edition = Literal["enterprise", "enterprise_dev", "community"]
ResetApi = Literal["implemented", "stub", "absent"]

EDITION_NAMES: dict[str, str] = {
    "enterprise": "Enterprise",
    "enterprise_dev": "EnterpriseDev",
    "community": "Open source",
}
_RELEASE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")
NEWEST = (1 << 30, 0, 0)
"""What an unreadable version counts as: newer than any feature's first release."""

RESET_STUB_FROM = (0, 290, 0)
RESET_REMOVED_IN = (0, 298, 0)
CONNECTOR_ERRORS_FROM = (0, 292, 0)
SYNC_RUNNING_AFTER = (0, 337, 0)
OUTPUT_PAUSED_AFTER = (0, 337, 0)


def release(version: str) -> str:
    """``X.Y.Z`` of a version as any endpoint spells it: without a leading ``v`` and without ``+...``."""
    return version.strip().removeprefix("v").split("+", 1)[0]


def release_tuple(version: str) -> tuple[int, int, int]:
    match = _RELEASE.match(version.strip())
    if match is None:
        return NEWEST
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def enterprise(edition: Edition) -> bool:
    return edition != "community"


def pipeline_platform_version(edition: Edition, version: str, suffix: str = "") -> str:
    """The ``platform_version`` a pipeline compiled by this build reports (``default_platform_version``)."""
    base = release(version)
    if enterprise(edition):
        return f"{base}+enterprise.{suffix}" if suffix else f"{base}+enterprise"
    return f"{base}+{suffix}" if suffix else base


def reset_api_of(edition: Edition, version: str) -> ResetApi:
    """What ``GET .../reset_status`` is on this build (see the module docstring)."""
    if enterprise(edition):
        return "implemented"
    if RESET_STUB_FROM <= release_tuple(version) < RESET_REMOVED_IN:
        return "stub"
    return "absent"


def serves_connector_errors(version: str) -> bool:
    return release_tuple(version) >= CONNECTOR_ERRORS_FROM


def serves_sync_running(version: str) -> bool:
    return release_tuple(version) > SYNC_RUNNING_AFTER


def serves_output_paused(version: str) -> bool:
    return release_tuple(version) > OUTPUT_PAUSED_AFTER
