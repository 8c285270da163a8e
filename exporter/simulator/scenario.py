"""Scenario files: the initial state of a simulated Feldera instance (YAML or JSON), validated with pydantic.

```yaml
edition: enterprise            # enterprise_dev (edition "EnterpriseDev", newer servers), or community: no
                               # fault tolerance, POST checkpoint and checkpoint/sync answer 501 EnterpriseFeature
sync_api: current              # or seed: POST checkpoint/sync answers 200 {checkpoint_sequence_number}
api_key: null                  # set to require "Authorization: Bearer <key>"
platform_version: 0.337.0      # the release (CARGO_PKG_VERSION): GET /v0/config "version"
platform_version_suffix: ""    # FELDERA_PLATFORM_VERSION_SUFFIX: pipelines report 0.337.0+enterprise.SUFFIX
reset_api: null                # implemented | stub | absent; null: by edition and version (docs/simulator.md)
server:                        # the rest of GET /v0/config
  license: valid               # valid | trial | invalid | unconfirmed (enterprise only; community reports none)
  license_expires_in_days: 365 # valid_until, counted from the simulator's start (negative: already expired)
  latest_version: null         # update check: null = none ran; "0.340.0" = that is the newest release
cluster: {api: true, compiler: true, runner: true, first_event_after: 0}  # 404 until the monitor's first event
pipelines:
  - name: orders
    platform_version: 0.336.0+enterprise  # compiled before an upgrade (default: the platform's, see below)
    runtime_version: null      # program_config.runtime_version: a runtime pinned on purpose
    runtime_config:            # merged over the defaults and normalised as the server stores it
      fault_tolerance: {model: exactly_once, checkpoint_interval_secs: 60}   # automatic checkpoints every 60 s
      hosts: 1                 # > 1: a multi-host pipeline (POST checkpoint/sync answers 400)
      max_rss_mb: 8000         # memory limit (MB of 10^6 bytes) that memory pressure is measured against
      resources: {storage_mb_max: 25000}   # the storage the pipeline's volume is sized for
    rss_mb: 7200               # resident set of its process: 94 % of the circuit's 7600 MB, memory pressure high
    storage_mb: 20000          # storage in use (default: the stored checkpoints' sizes)
    status: Running            # Stopped | Provisioning | Stopping | any runtime status (Running, Paused, ...)
    program_status: Success    # SqlError/RustError/SystemError come with a program_error
    checkpoints: 2             # checkpoints already in storage (storage_status_details; checkpoint_status null)
    checkpoint_failure: "disk full"   # a failed POST /checkpoint of this process (kept after later successes)
    automatic_checkpoint_failure: null  # error text: every automatic checkpoint fails (logged only, as upstream)
    tables:
      - name: orders           # unquoted: case-insensitive, stored lowercased
        connectors: [kafka-in, null]   # null -> unnamed-0, unnamed-1, ... per table
      - name: '"Customers"'    # quoted: case-sensitive
        connectors: [{name: s3, fatal_error: "bucket gone", health: Unhealthy}]
    views:
      - name: totals
        connectors: [delta-out, {name: audit, paused: true}]   # a paused output discards what it would send
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.models import COMBINED_STATUSES
from exporter.simulator.platform import Edition, ResetApi, enterprise, pipeline_platform_version, release
from exporter.simulator.runtime import normalized_runtime_config, refuse_enterprise_features

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
    """The runtime the program was compiled for, as the pipeline reports it (``0.336.0``,
    ``0.336.0+enterprise.SUFFIX``); ``None`` = the platform's (:meth:`Scenario.pipeline_platform_version`)."""
    runtime_version: str | None = None
    """``program_config.runtime_version``: a runtime pinned on purpose (``None``: the platform's)."""
    runtime_config: dict[str, Any] = Field(default_factory=dict)
    """Keys of ``runtime_config`` over the defaults (``fault_tolerance``, ``hosts``, ...), normalised as the
    manager stores them (:func:`exporter.simulator.runtime.normalized_runtime_config`)."""
    status: StatusName = "Running"
    desired_status: Literal["Stopped", "Running", "Paused", "Standby", "Suspended", "Unavailable"] | None = None
    program_status: Literal[
        "Pending", "CompilingSql", "SqlCompiled", "CompilingRust", "Success", "SqlError", "RustError", "SystemError"
    ] = "Success"
    program_error: str | None = None
    deployment_error: DeploymentErrorSpec | None = None
    storage_status: Literal["Cleared", "InUse", "Clearing"] | None = None
    checkpoints: int = 0
    """Checkpoints already in storage (``storage_status_details``); ``checkpoint_status`` reports none of them."""
    checkpoint_failure: str | None = None
    """A failed ``POST /checkpoint`` of the current process (error text)."""
    automatic_checkpoint_failure: str | None = None
    """Error text: every automatic checkpoint fails (only logged upstream: ``checkpoint_status`` stays as it is)."""
    rss_mb: float | None = Field(default=None, ge=0)
    """Resident set of the pipeline process, in 10^6 bytes (``None``: 256 MiB); memory pressure compares it with
    the limit ``runtime_config`` sets (``max_rss_mb`` or ``resources.memory_mb_max``)."""
    storage_mb: float | None = Field(default=None, ge=0)
    """Storage the pipeline uses, in 10^6 bytes (``None``: the stored checkpoints' sizes)."""
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
    first_event_after: float = Field(default=0.0, ge=0.0)
    """Seconds after the start before the cluster monitor stores its first event (until then
    ``GET /v0/cluster_healthz`` answers 404 ``NoClusterMonitorEventsAvailable``)."""


class ServerSpec(_Model):
    """What ``GET /v0/config`` reports besides the edition and version."""

    license: Literal["valid", "trial", "invalid", "unconfirmed"] = "valid"
    """Enterprise only: ``Exists`` (``trial``: ``is_trial``), or ``DoesNotExistOrNotConfirmed`` because the key is
    invalid or the licence check could not be reached."""
    license_expires_in_days: float = 365.0
    latest_version: str | None = None
    """``None``: no update check ran (``update_info`` null)."""


class Scenario(_Model):
    edition: Edition = "enterprise"
    sync_api: Literal["current", "seed"] = "current"
    api_key: str | None = Field(default=None, repr=False)
    platform_version: str = "0.337.0"
    """The release (``CARGO_PKG_VERSION``; a leading ``v`` is dropped): ``GET /v0/config``'s ``version``."""
    platform_version_suffix: str = ""
    """``FELDERA_PLATFORM_VERSION_SUFFIX`` of the build: part of every new pipeline's ``platform_version``."""
    reset_api: ResetApi | None = None
    """``GET .../reset_status``: ``None`` = what the edition and version serve
    (:func:`exporter.simulator.platform.reset_api_of`)."""
    server: ServerSpec = Field(default_factory=ServerSpec)
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    pipelines: list[PipelineSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _the_edition_allows(self) -> Scenario:
        """What the open-source build refuses: fault tolerance, and a ``POST /checkpoint`` (so no failed one)."""
        if enterprise(self.edition):
            return self
        for spec in self.pipelines:
            refuse_enterprise_features(normalized_runtime_config(spec.runtime_config), enterprise=False)
            if spec.checkpoint_failure is not None:
                raise ValueError(f"pipeline {spec.name!r}: checkpoint_failure: POST /checkpoint answers 501 there")
        return self

    def pipeline_platform_version(self) -> str:
        """The ``platform_version`` of pipelines this build compiles (``0.337.0+enterprise`` on Enterprise)."""
        return pipeline_platform_version(self.edition, self.platform_version, self.platform_version_suffix)

    @property
    def release(self) -> str:
        """``X.Y.Z``, as ``GET /v0/config`` reports it."""
        return release(self.platform_version)

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
        edition: Edition = "enterprise",
        connectors: int | None = None,
    ) -> Scenario:
        """``count`` pipelines with a realistic mix of states, for scale tests and benchmarks.

        Two in three (those with checkpoints in storage) are fault tolerant (``exactly_once``, automatic
        checkpoints every 60 s, the default interval); every 17th has a failed ``POST /checkpoint``. Neither on the
        open-source edition, which has no fault tolerance and refuses ``POST /checkpoint``.

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
        checkpointing = enterprise(edition)
        pipelines = []
        for i in range(count):
            name = f"{prefix}-{i:05d}"
            pipelines.append(
                PipelineSpec(
                    name=name,
                    status=mix[i % len(mix)],
                    checkpoints=i % 3,
                    runtime_config={"fault_tolerance": {"model": "exactly_once"}} if checkpointing and i % 3 else {},
                    checkpoint_failure="injected failure" if checkpointing and i % 17 == 0 else None,
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
