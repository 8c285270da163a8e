"""A pipeline's ``runtime_config`` as the manager stores and returns it, and what it decides about checkpoints.

The manager validates a runtime configuration into its ``RuntimeConfig`` type and stores that serialised
(``crates/pipeline-manager/src/db/operations/pipeline.rs``, ``validate_runtime_config`` then ``to_value``), so
``fault_tolerance`` always comes back as ``{"model": ..., "checkpoint_interval_secs": ...}``. How a configuration
reads (``crates/feldera-types/src/config.rs``, ``FtConfig``, its ``ft_config`` test and ``checkpoint_interval``):
fault tolerance is off when ``fault_tolerance`` is omitted, ``null`` or ``{"model": "none"}``, and on (model
``exactly_once``) for ``{}``, an object without ``model`` or the old strings ``initial_state``/``latest_checkpoint``;
``checkpoint_interval_secs`` defaults to 60, ``null`` turns automatic checkpoints off, and the interval used is
clamped to 1-3600 s. It is returned only with ``selector=all``
(``crates/pipeline-manager/src/api/endpoints/pipeline_management.rs``, ``new_status``: ``runtime_config: None``)
and may change only while the pipeline is stopped, which bumps its ``version`` (``pipeline.rs``, ``update_pipeline``:
``UpdateRestrictedToStopped``; ``fault_tolerance``, ``hosts`` and ``resources.storage_mb_max`` also need cleared
storage).

The memory limit memory pressure is measured against is the circuit's: ``max_rss_mb``, else
``resources.memory_mb_max``, less the DataFusion pool (``datafusion_memory_mb``, else 5 % of that budget, at most
2048 MB), in units of 10^6 bytes (``crates/adapters/src/controller.rs``, where the circuit configuration is built:
``with_max_rss_bytes(circuit_max_rss_mb.map(|mb| mb * 1_000_000))``; ``crates/feldera-types/src/config.rs``,
``effective_memory_mb`` and ``resolved_datafusion_memory_mb``). ``resources.storage_mb_max`` is the storage the
pipeline's volume is sized for, also in 10^6 bytes (``docs.feldera.com/docs/operations/guide.md``: 25000 gives a
24Gi volume).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_INTERVAL_SECS = 60
RUNTIME_CONFIG: dict[str, Any] = {
    "workers": 4,
    "hosts": 1,
    "storage": {
        "backend": {"name": "default"},
        "min_storage_bytes": None,
        "min_step_storage_bytes": None,
        "compression": "default",
        "cache_mib": None,
    },
    "fault_tolerance": {"model": "none", "checkpoint_interval_secs": DEFAULT_INTERVAL_SECS},
    "max_rss_mb": None,
    "datafusion_memory_mb": None,
    "resources": {
        "cpu_cores_min": None,
        "cpu_cores_max": None,
        "memory_mb_min": None,
        "memory_mb_max": None,
        "storage_mb_max": None,
        "storage_class": None,
        "service_account_name": None,
        "namespace": None,
    },
    "cpu_profiler": True,
    "tracing": False,
    "tracing_endpoint_jaeger": "",
    "min_batch_size_records": 0,
    "max_buffering_delay_usecs": 0,
    "clock_resolution_usecs": 1000000,
    "pin_cpus": [],
    "provisioning_timeout_secs": None,
    "max_parallel_connector_init": None,
    "init_containers": None,
    "checkpoint_during_suspend": True,
    "http_workers": None,
    "io_workers": None,
    "env": {},
    "dev_tweaks": {},
    "logging": None,
}


MB = 1_000_000
"""Feldera's megabyte (``max_rss_mb``, ``memory_mb_max``, ``storage_mb_max``)."""
DATAFUSION_PERCENT = 5
DATAFUSION_CEILING_MB = 2048
FT_MODELS = ("none", "at_least_once", "exactly_once")
_LEGACY_ENABLED = ("initial_state", "latest_checkpoint")


def normalized_fault_tolerance(value: object) -> dict[str, Any]:
    """``fault_tolerance`` as the server stores it; raises ``ValueError`` for a value it rejects."""
    if value is None:
        return {"model": "none", "checkpoint_interval_secs": DEFAULT_INTERVAL_SECS}
    if isinstance(value, str):
        if value in _LEGACY_ENABLED:
            return {"model": "exactly_once", "checkpoint_interval_secs": DEFAULT_INTERVAL_SECS}
        raise ValueError(f"fault_tolerance: unknown value {value!r}")
    if not isinstance(value, Mapping):
        raise ValueError("fault_tolerance: expected null, an object or 'initial_state'/'latest_checkpoint'")
    model = value.get("model", "exactly_once")
    if model not in FT_MODELS:
        raise ValueError(f"fault_tolerance.model: expected one of {', '.join(FT_MODELS)}, got {model!r}")
    interval = value.get("checkpoint_interval_secs", DEFAULT_INTERVAL_SECS)
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int) or interval < 0):
        raise ValueError("fault_tolerance.checkpoint_interval_secs: expected null or an unsigned integer")
    return {"model": model, "checkpoint_interval_secs": interval}


def normalized_runtime_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The default configuration with ``overrides`` (top-level keys) applied and ``fault_tolerance`` normalised.

    Nested values are shared with the defaults and the overrides, never copied (10,000 deep copies were most of a
    generated fleet's start-up): nothing changes a configuration in place, a change replaces top-level keys."""
    config = {**RUNTIME_CONFIG, **(overrides or {})}
    config["fault_tolerance"] = normalized_fault_tolerance(config.get("fault_tolerance"))
    resources = config.get("resources")
    if resources is not RUNTIME_CONFIG["resources"]:  # keys it leaves out take their defaults (serde default)
        if not isinstance(resources, Mapping):
            raise ValueError("resources: expected an object")
        config["resources"] = {**RUNTIME_CONFIG["resources"], **resources}
    hosts = config.get("hosts", 1)
    if isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 1:
        raise ValueError("hosts: expected an integer of at least 1")
    return config


def refuse_enterprise_features(config: Mapping[str, Any], enterprise: bool) -> None:
    """Raise ``ValueError`` for a configuration the open-source build refuses: fault tolerance is an Enterprise
    feature there. Its manager rejects such a ``runtime_config`` on create and update (``InvalidRuntimeConfig``,
    ``enterprise feature: fault tolerance``: ``crates/pipeline-manager/src/db/types/utils.rs``,
    ``validate_runtime_config``), its runner keeps a stored one stopped with a deployment error
    (``runner/pipeline_automata.rs``) and its pipeline process refuses to start with it
    (``crates/adapters/src/server.rs``, ``start_controller``): no open-source pipeline takes automatic
    checkpoints."""
    if not enterprise and (config.get("fault_tolerance") or {}).get("model", "none") != "none":
        raise ValueError("InvalidRuntimeConfig: enterprise feature: fault tolerance (the open-source edition)")


def checkpoint_interval(config: Mapping[str, Any]) -> float | None:
    """Seconds between automatic checkpoints, or None when there are none (``FtConfig::checkpoint_interval``)."""
    ft = config.get("fault_tolerance") or {}
    interval = ft.get("checkpoint_interval_secs")
    if ft.get("model", "none") == "none" or interval is None:
        return None
    return float(min(max(int(interval), 1), 3600))


def hosts(config: Mapping[str, Any]) -> int:
    return int(config.get("hosts", 1))


def _megabytes(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def max_rss_bytes(config: Mapping[str, Any]) -> int | None:
    """The circuit's memory limit in bytes (see the module docstring), or None without one (pressure stays low)."""
    resources = config.get("resources") or {}
    budget = _megabytes(config.get("max_rss_mb"))
    if budget is None:
        budget = _megabytes(resources.get("memory_mb_max"))
    if budget is None:
        return None
    pool = _megabytes(config.get("datafusion_memory_mb"))
    if pool is None:
        pool = min(budget * DATAFUSION_PERCENT // 100, DATAFUSION_CEILING_MB)
    return max(budget - pool, 0) * MB
