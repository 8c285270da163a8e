"""Typed, lenient models of the Feldera pipeline-manager API responses the exporter reads.

Leniency rules (see ``docs/feldera-api.md``): unknown fields are ignored, enum-like fields are plain
strings so that values newer than this code are kept as-is (the metric layer maps them to ``Other``), optional
keys may be missing, and timestamps with nanosecond precision or in an unexpected shape become ``None``
rather than failing the whole document.

The models are frozen, slotted pydantic dataclasses (:func:`lenient`) with the ``model_validate``,
``model_validate_json`` and ``model_copy`` of pydantic models: a snapshot holds one instance per pipeline,
connector and nested object, and a ``BaseModel`` instance carries a ``__dict__`` and a set of the fields that were
present besides its values: at 10,000 pipelines x 4 connectors that was 164 MiB per snapshot, 5x what the values
need, and as many more objects for every garbage collection to walk.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self, TypeVar, cast

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$", re.ASCII)
"""RFC 3339 (ASCII digits only: ``re``'s ``\\d`` would take any Unicode digit, and ``int`` would read them)."""


def parse_timestamp(value: object) -> float | None:
    """RFC 3339 text (any number of fractional digits) -> seconds since the epoch; anything else -> None.

    >>> parse_timestamp("2024-05-01T12:00:00.123456789Z")
    1714564800.123456
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if not match:
        return None
    date, clock, fraction, zone = match.groups()
    zone = zone or "Z"
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError:
        return None
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return moment.astimezone(UTC).timestamp() + micros / 1_000_000


Timestamp = Annotated[float | None, BeforeValidator(parse_timestamp)]


def _int_or_none(value: object) -> int | None:
    """A non-negative integer, else None: every count, size and version Feldera sends is unsigned."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= 0:
        return value
    return None


def _int_or_zero(value: object) -> int:
    return _int_or_none(value) or 0


def _bool(value: object) -> bool:
    return value is True


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


MAX_TEXT_CHARS = 1024
"""Longest text field kept from an answer (an error message, a status, an ID); the rest is cut off. A snapshot holds
the answers of every pipeline and connector for a cycle: without a cap, one long message per connector (each
answer under ``max_response_size``) would multiply into gigabytes. A pipeline name is never cut (it is an identity
and the URL of its requests): a longer one makes its list entry malformed."""


def _str_or_none(value: object) -> str | None:
    return value[:MAX_TEXT_CHARS] if isinstance(value, str) else None


def _str(value: object) -> str:
    return value[:MAX_TEXT_CHARS] if isinstance(value, str) else ""


def _name(value: object) -> object:
    """A name as it is (lone surrogates included: they are served as U+FFFD), unless longer than
    :data:`MAX_TEXT_CHARS` (pydantic's ``max_length`` would also refuse lone surrogates)."""
    if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"longer than {MAX_TEXT_CHARS} characters ({len(value)})")
    return value


def _length_or_none(value: object) -> int | None:
    """How many entries a list has (the entries are not kept); anything but a list: None."""
    return len(value) if isinstance(value, list) else None


def _str_list_or_none(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(item for item in value if isinstance(item, str))


def _details_reason(value: object) -> str | None:
    """``deployment_runtime_status_details.reason``: free text (``RuntimeStatusDetails``), at most
    :data:`MAX_TEXT_CHARS` of it; None when absent."""
    reason = value.get("reason") if isinstance(value, Mapping) else None
    return reason[:MAX_TEXT_CHARS] if isinstance(reason, str) else None


OptInt = Annotated[int | None, BeforeValidator(_int_or_none)]
Count = Annotated[int, BeforeValidator(_int_or_zero)]
Flag = Annotated[bool, BeforeValidator(_bool)]
OptBool = Annotated[bool | None, BeforeValidator(_bool_or_none)]
OptStr = Annotated[str | None, BeforeValidator(_str_or_none)]
Text = Annotated[str, BeforeValidator(_str)]


# The status enums of the OpenAPI spec (CombinedStatus, CombinedDesiredStatus, ResourcesStatus, ...). Models keep
# any string; these tuples say which values this code knows (the metric layer maps others to ``Other``).
COMBINED_STATUSES = (
    "Stopped",
    "Provisioning",
    "Unavailable",
    "Coordination",
    "Standby",
    "AwaitingApproval",
    "Initializing",
    "Bootstrapping",
    "ConcurrentBootstrapping",
    "Synchronizing",
    "Replaying",
    "Paused",
    "Running",
    "Suspended",
    "Stopping",
)
COMBINED_DESIRED_STATUSES = ("Stopped", "Unavailable", "Standby", "Paused", "Running", "Suspended")
RESOURCES_STATUSES = ("Stopped", "Provisioning", "Provisioned", "Stopping")
RESOURCES_DESIRED_STATUSES = ("Stopped", "Provisioned")
RUNTIME_STATUSES = (
    "Unavailable",
    "Coordination",
    "Standby",
    "Initializing",
    "AwaitingApproval",
    "Bootstrapping",
    "Replaying",
    "Paused",
    "Running",
    "Suspended",
    "ConcurrentBootstrapping",
    "Synchronizing",
)
RUNTIME_DESIRED_STATUSES = ("Unavailable", "Coordination", "Standby", "Paused", "Running", "Suspended")
PROGRAM_STATUSES = (
    "Pending",
    "CompilingSql",
    "SqlCompiled",
    "CompilingRust",
    "Success",
    "SqlError",
    "RustError",
    "SystemError",
)
STORAGE_STATUSES = ("Cleared", "InUse", "Clearing")


class Lenient:
    """Base of the API models; decorate each subclass with :func:`lenient`."""

    __slots__ = ()
    _adapter: ClassVar[TypeAdapter[Any]]

    @classmethod
    def model_validate(cls, obj: object) -> Self:
        """Validate parsed JSON (or an instance); raises :class:`pydantic.ValidationError`."""
        return cast(Self, cls._adapter.validate_python(obj))

    @classmethod
    def model_validate_json(cls, data: str | bytes | bytearray) -> Self:
        """Parse and validate JSON text in one pass; raises :class:`pydantic.ValidationError` (type
        ``json_invalid`` when it is not JSON)."""
        return cast(Self, cls._adapter.validate_json(data))

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self:
        made: Any = self  # every subclass is a dataclass (lenient()), which the type checker cannot see here
        return cast(Self, dataclasses.replace(made, **(update or {})))


L = TypeVar("L", bound=type[Lenient])


def lenient(cls: L) -> L:
    """A frozen, slotted, keyword-only pydantic dataclass that ignores unknown fields."""
    made: Any = pydantic_dataclass(config=ConfigDict(extra="ignore"), frozen=True, slots=True, kw_only=True)(cls)
    made._adapter = TypeAdapter(made)
    return cast(L, made)  # pydantic types it as its own PydanticDataclass protocol; it is still the class given


@lenient
class ErrorBody(Lenient):
    """Feldera's error response (also the shape of ``deployment_error``); ``details`` is not kept."""

    message: Text = ""
    error_code: Text = ""


# ---- pipelines (GET /v0/pipelines, GET /v0/pipelines/{name}) -------------------------------------------------


@lenient
class StoredCheckpoint(Lenient):
    uuid: Text = ""
    size: OptInt = None
    processed_records: OptInt = None
    steps: OptInt = None


@lenient
class StorageStatusDetails(Lenient):
    checkpoints: list[StoredCheckpoint] = Field(default_factory=list)


@lenient
class ConnectorSummary(Lenient):
    num_errors: OptInt = None


@lenient
class ProgramConfig(Lenient):
    """``program_config`` (every selector): ``runtime_version`` set = a runtime pinned on purpose."""

    runtime_version: OptStr = None


@lenient
class Pipeline(Lenient):
    """One entry of the pipeline list with ``selector=status_with_connectors`` (or ``status``/``all``)."""

    id: Text = ""
    name: Annotated[str, BeforeValidator(_name)]
    """At most :data:`MAX_TEXT_CHARS` characters (Feldera allows 63 bytes): an entry with a longer name is malformed."""
    created_at: Timestamp = None
    version: OptInt = None
    platform_version: Text = ""
    program_config: ProgramConfig | None = None
    program_version: OptInt = None
    program_status: Text = ""
    program_status_since: Timestamp = None
    refresh_version: OptInt = None
    storage_status: Text = ""
    storage_status_details: StorageStatusDetails | None = None
    deployment_id: OptStr = None
    deployment_status: Text = ""
    deployment_status_since: Timestamp = None
    deployment_desired_status: Text = ""
    deployment_desired_status_since: Timestamp = None
    deployment_resources_status: Text = ""
    deployment_resources_status_since: Timestamp = None
    deployment_resources_desired_status: Text = ""
    deployment_resources_desired_status_since: Timestamp = None
    deployment_runtime_status: OptStr = None
    deployment_runtime_status_since: Timestamp = None
    runtime_status_reason: Annotated[str | None, BeforeValidator(_details_reason)] = Field(
        default=None, alias="deployment_runtime_status_details"
    )
    """``deployment_runtime_status_details.reason``: why the runtime status is what it is (free text, mostly for
    ``Unavailable`` and ``Initializing``); the rest of the details is not kept."""
    deployment_runtime_desired_status: OptStr = None
    deployment_runtime_desired_status_since: Timestamp = None
    deployment_error: ErrorBody | None = None
    connectors: ConnectorSummary | None = None


# ---- checkpoints ----------------------------------------------------------------------------------------------


@lenient
class CheckpointFailure(Lenient):
    sequence_number: OptInt = None
    error: Text = ""
    failed_at: Timestamp = None


@lenient
class CheckpointStatus(Lenient):
    """GET .../checkpoint_status. Neither field clears the other (docs/feldera-api.md)."""

    success: OptInt = None
    failure: CheckpointFailure | None = None


@lenient
class CheckpointSyncFailure(Lenient):
    uuid: Text = ""
    error: Text = ""


@lenient
class CheckpointSyncStatus(Lenient):
    """GET .../checkpoint/sync_status."""

    success: OptStr = None
    failure: CheckpointSyncFailure | None = None
    periodic: OptStr = None
    running: Annotated[tuple[str, ...] | None, BeforeValidator(_str_list_or_none)] = None
    """Syncs in progress (newer servers; ``None`` when the server does not say)."""


@lenient
class CheckpointSyncResponse(Lenient):
    """POST .../checkpoint/sync: 200 ``checkpoint_sequence_number`` (seed) or 202 ``checkpoint_uuid`` (server)."""

    checkpoint_sequence_number: OptInt = None
    checkpoint_uuid: OptStr = None
    incarnation_uuid: OptStr = None


# ---- connector stats (per-connector endpoints and GET .../stats) ----------------------------------------------


@lenient
class ConnectorHealth(Lenient):
    status: Text = ""
    description: OptStr = None


@lenient
class ConnectorErrorEntry(Lenient):
    """One element of ``parse_errors``/``transport_errors``/``encode_errors``; the message is not kept."""

    timestamp: Timestamp = None
    index: OptInt = None
    tag: OptStr = None


@lenient
class CompletedFrontier(Lenient):
    ingested_at: Timestamp = None
    processed_at: Timestamp = None
    completed_at: Timestamp = None


@lenient
class EndpointConfig(Lenient):
    stream: Text = ""


@lenient
class InputEndpointMetrics(Lenient):
    total_bytes: Count = 0
    total_records: Count = 0
    buffered_records: Count = 0
    buffered_bytes: Count = 0
    num_transport_errors: Count = 0
    num_parse_errors: Count = 0
    end_of_input: Flag = False
    processing_latency_p99_micros: OptInt = None


@lenient
class InputEndpointStatus(Lenient):
    endpoint_name: Text = ""
    config: EndpointConfig = Field(default_factory=EndpointConfig)
    metrics: InputEndpointMetrics = Field(default_factory=InputEndpointMetrics)
    paused: Flag = False
    barrier: Flag = False
    fatal_error: OptStr = None
    health: ConnectorHealth | None = None
    completed_frontier: CompletedFrontier | None = None
    parse_errors: list[ConnectorErrorEntry] | None = None
    transport_errors: list[ConnectorErrorEntry] | None = None


@lenient
class OutputEndpointMetrics(Lenient):
    transmitted_records: Count = 0
    transmitted_bytes: Count = 0
    queued_records: Count = 0
    queued_batches: Count = 0
    buffered_records: Count = 0
    buffered_batches: Count = 0
    num_encode_errors: Count = 0
    num_transport_errors: Count = 0
    total_processed_input_records: Count = 0
    total_processed_steps: Count = 0
    memory: Count = 0


@lenient
class OutputEndpointStatus(Lenient):
    endpoint_name: Text = ""
    config: EndpointConfig = Field(default_factory=EndpointConfig)
    metrics: OutputEndpointMetrics = Field(default_factory=OutputEndpointMetrics)
    paused: OptBool = None
    """A paused output connector discards its output; None from servers that predate pausable outputs."""
    fatal_error: OptStr = None
    health: ConnectorHealth | None = None
    encode_errors: list[ConnectorErrorEntry] | None = None
    transport_errors: list[ConnectorErrorEntry] | None = None


def _reason_names(value: object) -> tuple[str, ...]:
    """``reasons`` of a delayed checkpoint (``TemporarySuspendError`` values) or permanent checkpoint errors
    (``PermanentSuspendError`` values), as serde writes Rust enum values: a name (``"Replaying"``) or a one-key
    object (``{"InputEndpointBarrier": "t.c"}``); the names, each at most :data:`MAX_TEXT_CHARS` long, anything else
    left out."""
    if not isinstance(value, list):
        return ()
    names: list[str] = []
    for reason in value:
        if isinstance(reason, str):
            names.append(reason[:MAX_TEXT_CHARS])
        elif isinstance(reason, Mapping) and len(reason) == 1:
            (key,) = reason
            if isinstance(key, str):
                names.append(key[:MAX_TEXT_CHARS])
    return tuple(names)


@lenient
class CheckpointActivity(Lenient):
    """``checkpoint_activity`` of GET .../stats: ``idle``, ``delayed`` (with ``reasons``) or ``in_progress``."""

    status: Text = ""
    reasons: Annotated[tuple[str, ...], BeforeValidator(_reason_names)] = ()
    delayed_since: Timestamp = None
    started_at: Timestamp = None


@lenient
class GlobalControllerMetrics(Lenient):
    state: OptStr = None
    incarnation_uuid: OptStr = None
    start_time: OptInt = None
    rss_bytes: OptInt = None
    memory_pressure: OptStr = None
    """``low``, ``moderate``, ``high`` or ``critical`` (docs/feldera-api.md, "What a pipeline process uses")."""
    memory_pressure_epoch: OptInt = None
    storage_bytes: OptInt = None
    output_stall_msecs: OptInt = None
    total_input_records: OptInt = None
    buffered_input_records: OptInt = None


MEMORY_PRESSURES = ("low", "moderate", "high", "critical")
PERMANENT_SUSPEND_ERRORS = ("StorageRequired", "EnterpriseFeature", "UnsupportedInputEndpoint")
"""``PermanentSuspendError`` variants (``crates/feldera-types/src/suspend.rs``)."""


@lenient
class ControllerStatus(Lenient):
    """GET .../stats: every input and output endpoint in one call (without the error arrays)."""

    global_metrics: GlobalControllerMetrics = Field(default_factory=GlobalControllerMetrics)
    inputs: list[InputEndpointStatus] = Field(default_factory=list)
    outputs: list[OutputEndpointStatus] = Field(default_factory=list)
    checkpoint_activity: CheckpointActivity | None = None
    permanent_checkpoint_errors: Annotated[tuple[str, ...], BeforeValidator(_reason_names)] = ()
    """The reasons no checkpoint can succeed (``PermanentSuspendError`` names, one per unsupported input)."""


# ---- cluster --------------------------------------------------------------------------------------------------


@lenient
class ServiceStatus(Lenient):
    healthy: Flag = False
    unchanged_since: Timestamp = None
    checked_at: Timestamp = None


@lenient
class ClusterHealth(Lenient):
    """GET /v0/cluster_healthz (200 when all healthy, 503 otherwise; same body). ``checked_at`` is when the
    cluster monitor stored the answer (the same for every service); a monitor that has stored nothing yet answers
    404 ``NoClusterMonitorEventsAvailable``, which the client turns into :data:`NO_CLUSTER_EVENTS`."""

    all_healthy: Flag = False
    api: ServiceStatus | None = None
    compiler: ServiceStatus | None = None
    runner: ServiceStatus | None = None
    events: bool = True
    """False: the cluster monitor has not stored its first check yet (not an outage)."""


NO_CLUSTER_EVENTS = ClusterHealth.model_validate({"events": False})


# ---- runtime configuration (GET /v0/pipelines/{name}?selector=all) ----------------------------------------------

FT_MODELS = ("none", "at_least_once", "exactly_once")
CHECKPOINT_INTERVAL_DEFAULT = 60.0
CHECKPOINT_INTERVAL_BOUNDS = (1.0, 3600.0)


@dataclasses.dataclass(frozen=True, slots=True)
class FaultTolerance:
    """What a pipeline's ``runtime_config`` says about checkpoints and the storage they are written to, read as
    Feldera reads it (``crates/feldera-types/src/config.rs``, ``FtConfig``; docs/feldera-api.md, "Fault
    tolerance"). The whole runtime configuration is not kept."""

    model: str = "none"
    """``none``, ``at_least_once``, ``exactly_once``, or a newer model as the server spells it."""
    checkpoint_interval_seconds: float | None = None
    """Seconds between automatic checkpoints, clamped to 1-3600; None when there are none (fault tolerance off,
    or ``checkpoint_interval_secs: null``)."""
    hosts: int | None = None
    sync_configured: bool = False
    """The storage backend has a checkpoint-sync configuration (periodic syncs may happen)."""
    storage_limit_bytes: int | None = None
    """``resources.storage_mb_max`` in bytes (10^6 per MB: docs/feldera-api.md, "What a pipeline process uses"): the
    storage the pipeline's volume is sized for; None when not set."""
    version: int | None = None
    """The pipeline ``version`` this was read at (a configuration change bumps it)."""

    @property
    def enabled(self) -> bool:
        return self.model != "none"


def read_fault_tolerance(runtime_config: object) -> FaultTolerance:
    """:class:`FaultTolerance` of a ``runtime_config`` value (anything unreadable: fault tolerance off).

    >>> read_fault_tolerance({"fault_tolerance": {"model": "exactly_once", "checkpoint_interval_secs": 5000}})
    FaultTolerance(model='exactly_once', checkpoint_interval_seconds=3600.0, hosts=None, sync_configured=False, \
storage_limit_bytes=None, version=None)
    """
    config = runtime_config if isinstance(runtime_config, Mapping) else {}
    ft = config.get("fault_tolerance")
    model, interval = "none", None
    if isinstance(ft, str) and ft in ("initial_state", "latest_checkpoint"):
        model, interval = "exactly_once", CHECKPOINT_INTERVAL_DEFAULT
    elif isinstance(ft, Mapping):
        raw_model = ft.get("model", "exactly_once")
        model = raw_model if isinstance(raw_model, str) and raw_model else "none"
        seconds = ft.get("checkpoint_interval_secs", CHECKPOINT_INTERVAL_DEFAULT)
        if model != "none" and isinstance(seconds, int | float) and not isinstance(seconds, bool):
            low, high = CHECKPOINT_INTERVAL_BOUNDS
            interval = min(max(float(int(seconds)), low), high)
    storage = config.get("storage")
    backend = storage.get("backend") if isinstance(storage, Mapping) else None
    backend_config = backend.get("config") if isinstance(backend, Mapping) else None
    sync = backend_config.get("sync") if isinstance(backend_config, Mapping) else None
    resources = config.get("resources")
    storage_mb = _int_or_none(resources.get("storage_mb_max")) if isinstance(resources, Mapping) else None
    return FaultTolerance(
        model=model,
        checkpoint_interval_seconds=interval if model != "none" else None,
        hosts=_int_or_none(config.get("hosts")),
        sync_configured=isinstance(sync, Mapping),
        storage_limit_bytes=None if storage_mb is None else storage_mb * 1_000_000,
    )


@lenient
class PipelineRuntimeConfig(Lenient):
    """``GET /v0/pipelines/{name}?selector=all``, of which only the version and what ``runtime_config`` says about
    checkpoints are kept (the program code and ``program_info`` in the same answer are dropped)."""

    name: Text = ""
    version: OptInt = None
    runtime: Annotated[FaultTolerance, BeforeValidator(read_fault_tolerance)] = Field(
        default_factory=FaultTolerance, alias="runtime_config"
    )

    @property
    def fault_tolerance(self) -> FaultTolerance:
        """The fault-tolerance facts, stamped with the version they were read at."""
        return dataclasses.replace(self.runtime, version=self.version)


# ---- server (GET /v0/config) ----------------------------------------------------------------------------------


def _mapping_or_none(value: object) -> object:
    """An optional nested object: anything but a JSON object (a newer or broken shape) becomes None."""
    return value if isinstance(value, Mapping) else None


@lenient
class LicenseInformation(Lenient):
    """``license_validity.Exists``: the licence the server confirmed."""

    valid_until: Timestamp = None
    remind_starting_at: Timestamp = None
    is_trial: OptBool = None


@lenient
class LicenseValidity(Lenient):
    """``{"Exists": {...}}`` or ``{"DoesNotExistOrNotConfirmed": "why"}``; any other key leaves both None."""

    exists: Annotated[LicenseInformation | None, BeforeValidator(_mapping_or_none)] = Field(
        default=None, alias="Exists"
    )
    not_confirmed: OptStr = Field(default=None, alias="DoesNotExistOrNotConfirmed")

    @property
    def valid(self) -> bool | None:
        """True when the licence exists, False when the server says it does not (or could not confirm it)."""
        if self.exists is not None:
            return True
        if self.not_confirmed is not None:
            return False
        return None


@lenient
class UpdateInformation(Lenient):
    latest_version: Text = ""
    is_latest_version: OptBool = None


@lenient
class Configuration(Lenient):
    """GET /v0/config: the platform's version, edition, licence and update check (build details are not kept)."""

    version: Text = ""
    edition: Text = ""
    revision: Text = ""
    runtime_revision: Text = ""

    @property
    def enterprise(self) -> bool:
        """``Enterprise`` or ``EnterpriseDev`` (the official client 0.369 knows both; compared as it does,
        ignoring case); ``Open source`` or an unknown edition is not."""
        return self.edition.strip().lower() in ("enterprise", "enterprisedev")

    license_validity: Annotated[LicenseValidity | None, BeforeValidator(_mapping_or_none)] = None
    update_info: Annotated[UpdateInformation | None, BeforeValidator(_mapping_or_none)] = None
