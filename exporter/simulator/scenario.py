"""Scenario files: the initial state of a simulated Feldera instance (YAML or JSON), validated with pydantic.

```yaml
edition: enterprise            # or community: checkpoint sync answers 501 EnterpriseFeature
sync_api: current              # or seed: POST checkpoint/sync answers 200 {checkpoint_sequence_number}
api_key: null                  # set to require "Authorization: Bearer <key>"
platform_version: v0.337.0     # GET /v0/config "version" (without the v) and every pipeline's default
server:                        # the rest of GET /v0/config
  license: valid               # valid | trial | invalid | unconfirmed (enterprise only; community reports none)
  license_expires_in_days: 365 # valid_until, counted from the simulator's start (negative: already expired)
  latest_version: null         # update check: null = none ran; "0.340.0" = that is the newest release
cluster: {api: true, compiler: true, runner: true}
pipelines:
  - name: orders
    platform_version: v0.336.0 # compiled before an upgrade (default: the scenario's platform_version)
    status: Running            # Stopped | Provisioning | Stopping | any runtime status (Running, Paused, ...)
    program_status: Success    # SqlError/RustError/SystemError come with a program_error
    checkpoints: 2             # successful checkpoints already taken (listed in storage_status_details)
    checkpoint_failure: "disk full"   # a failed checkpoint after them (kept after later successes)
    tables:
      - name: orders           # unquoted: case-insensitive, stored lowercased
        connectors: [kafka-in, null]   # null -> unnamed-0, unnamed-1, ... per table
      - name: '"Customers"'    # quoted: case-sensitive
        connectors: [{name: s3, fatal_error: "bucket gone", health: Unhealthy}]
    views:
      - name: totals
        connectors: [delta-out]
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from exporter.models import COMBINED_STATUSES

StatusName = Literal[COMBINED_STATUSES]  # type: ignore[valid-type]  # a tuple's values, read by pydantic at run time


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectorSpec(_Model):
    name: str | None = None
    """``None`` -> ``unnamed-N`` (N counts unnamed connectors of the same table/view)."""
    records_per_second: float = 100.0
    bytes_per_record: int = 64
    fatal_error: str | None = None
    health: Literal["Healthy", "Unhealthy"] | None = None
    health_description: str | None = None
    paused: bool = False
    end_of_input: bool = False
    parse_errors: int = 0
    transport_errors: int = 0
    encode_errors: int = 0


ConnectorEntry = Annotated[str | ConnectorSpec | None, Field(union_mode="left_to_right")]


class RelationSpec(_Model):
    name: str
    """SQL identifier as written: ``orders`` (stored lowercased) or ``'"Orders"'`` (case kept)."""
    connectors: list[ConnectorEntry] = Field(default_factory=list)


class DeploymentErrorSpec(_Model):
    message: str
    error_code: str
    details: Any = None


class PipelineSpec(_Model):
    name: str
    id: str | None = None
    description: str = ""
    platform_version: str | None = None
    """The runtime the program was compiled for; ``None`` = the scenario's ``platform_version``."""
    status: StatusName = "Running"
    desired_status: Literal["Stopped", "Running", "Paused", "Standby", "Suspended", "Unavailable"] | None = None
    program_status: Literal[
        "Pending", "CompilingSql", "SqlCompiled", "CompilingRust", "Success", "SqlError", "RustError", "SystemError"
    ] = "Success"
    program_error: str | None = None
    deployment_error: DeploymentErrorSpec | None = None
    storage_status: Literal["Cleared", "InUse", "Clearing"] | None = None
    checkpoints: int = 0
    checkpoint_failure: str | None = None
    sync: Literal["success", "failure", "pending"] = "success"
    """What happens after POST checkpoint/sync: completes at once, fails at once, or waits for the control API."""
    connectors_known: bool = True
    """False -> ``connectors`` is omitted from ``status_with_connectors`` even while running."""
    tables: list[RelationSpec] = Field(default_factory=list)
    views: list[RelationSpec] = Field(default_factory=list)
    created_at: float | None = None


class ClusterSpec(_Model):
    api: bool = True
    compiler: bool = True
    runner: bool = True


class ServerSpec(_Model):
    """What ``GET /v0/config`` reports besides the edition and version."""

    license: Literal["valid", "trial", "invalid", "unconfirmed"] = "valid"
    """Enterprise only: ``Exists`` (``trial``: ``is_trial``), or ``DoesNotExistOrNotConfirmed`` because the key is
    invalid or the licence check could not be reached."""
    license_expires_in_days: float = 365.0
    latest_version: str | None = None
    """``None``: no update check ran (``update_info`` null)."""


class Scenario(_Model):
    edition: Literal["enterprise", "community"] = "enterprise"
    sync_api: Literal["current", "seed"] = "current"
    api_key: str | None = Field(default=None, repr=False)
    platform_version: str = "v0.337.0"
    server: ServerSpec = Field(default_factory=ServerSpec)
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    pipelines: list[PipelineSpec] = Field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a YAML or JSON scenario file (JSON is YAML, so one parser serves both)."""
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return cls.model_validate(data or {})

    @classmethod
    def generate(
        cls,
        count: int,
        *,
        prefix: str = "pipeline",
        tables: int = 2,
        views: int = 1,
        edition: Literal["enterprise", "community"] = "enterprise",
        connectors: int | None = None,
    ) -> Scenario:
        """``count`` pipelines with a realistic mix of states, for scale tests and benchmarks.

        ``connectors=None``: per table ``in-<t>`` and one unnamed connector, per view ``out-<v>``. ``connectors=N``:
        exactly N connectors per pipeline, all named: ``max(1, N // 4)`` outputs (``out-0``, ...) spread round-robin
        over the views when N >= 2 (none when there are no views), the rest inputs (``in-0``, ...) spread
        round-robin over the tables.
        """
        if connectors is not None and connectors < 1:
            raise ValueError(f"connectors per pipeline must be at least 1, got {connectors}")
        mix: tuple[StatusName, ...] = ("Running",) * 6 + ("Paused", "Stopped", "Initializing", "Suspended")
        if connectors is None:
            table_connectors: list[list[ConnectorEntry]] = [[f"in-{t}", None] for t in range(tables)]
            view_connectors: list[list[ConnectorEntry]] = [[f"out-{v}"] for v in range(views)]
        else:
            table_connectors, view_connectors = _spread_connectors(connectors, tables, views)
        pipelines = []
        for i in range(count):
            name = f"{prefix}-{i:05d}"
            pipelines.append(
                PipelineSpec(
                    name=name,
                    status=mix[i % len(mix)],
                    checkpoints=i % 3,
                    checkpoint_failure="injected failure" if i % 17 == 0 else None,
                    tables=[RelationSpec(name=f"t{t}", connectors=list(c)) for t, c in enumerate(table_connectors)],
                    views=[RelationSpec(name=f"v{v}", connectors=list(c)) for v, c in enumerate(view_connectors)],
                )
            )
        return cls(edition=edition, pipelines=pipelines)


def _spread_connectors(
    connectors: int, tables: int, views: int
) -> tuple[list[list[ConnectorEntry]], list[list[ConnectorEntry]]]:
    """Connector names per table and per view for ``Scenario.generate(..., connectors=N)``."""
    outputs = max(1, connectors // 4) if connectors >= 2 and views > 0 else 0
    inputs = connectors - outputs
    if inputs and not tables:
        raise ValueError(f"{inputs} input connector(s) per pipeline need at least one table")
    table_connectors: list[list[ConnectorEntry]] = [[] for _ in range(tables)]
    view_connectors: list[list[ConnectorEntry]] = [[] for _ in range(views)]
    for k in range(inputs):
        table_connectors[k % tables].append(f"in-{k}")
    for k in range(outputs):
        view_connectors[k % views].append(f"out-{k}")
    return table_connectors, view_connectors
