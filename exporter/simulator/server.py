"""The simulator: Feldera's REST API over real HTTP, plus a control API (Python and HTTP) to script it.

:class:`Simulator` owns the server's lifecycle, the route table (``_route``), faults, and the control API of
pipelines and of the instance; the control API of checkpoints and of connectors comes from their parts
(:class:`~exporter.simulator.checkpoints.CheckpointControl`, :class:`~exporter.simulator.connectors.ConnectorControl`),
and the answers of a pipeline's interaction endpoints from :mod:`exporter.simulator.interaction`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import asdict
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.web import Request, Response

from exporter.simulator import errors
from exporter.simulator.checkpoints import CheckpointControl
from exporter.simulator.clock import Clock, ManualClock, SystemClock
from exporter.simulator.connectors import ConnectorControl
from exporter.simulator.faults import HTML_502, MALFORMED_JSON, Fault
from exporter.simulator.interaction import INTERACTION_ERRORS, expected_method, interact
from exporter.simulator.metrics import manager_metrics
from exporter.simulator.model import SELECTORS, Pipeline, World
from exporter.simulator.platform import release, serves_output_paused
from exporter.simulator.resources import ResourceControl
from exporter.simulator.runtime import refuse_enterprise_features
from exporter.simulator.scenario import PipelineSpec, Scenario
from exporter.webserver import EVERY_PATH, ServerLimits, WebServer

CONTROL_METHODS = (
    "create_pipeline",
    "delete_pipeline",
    "start_pipeline",
    "set_status",
    "stop_pipeline",
    "restart_pipeline",
    "set_deployment_error",
    "set_program_status",
    "fail_compile",
    "checkpoint",
    "fail_checkpoint",
    "set_automatic_checkpoints",
    "set_checkpoint_activity",
    "set_permanent_checkpoint_errors",
    "set_sync_mode",
    "succeed_sync",
    "fail_sync",
    "set_periodic_sync",
    "set_connector_fatal_error",
    "set_connector_health",
    "set_connector_state",
    "add_connector_errors",
    "set_memory",
    "set_storage",
    "set_output_stall",
    "set_runtime_status_reason",
    "issue_reset_token",
    "complete_reset",
    "set_interaction_error",
    "set_runtime_config",
    "clear_storage",
    "set_cluster_health",
    "stall_cluster_monitor",
    "set_edition",
    "set_reset_api",
    "set_sync_api",
    "upgrade_platform",
    "add_fault",
    "clear_faults",
    "advance_clock",
)
CONTROL_QUERIES = ("state", "database_writes", "requests")
"""Read-only control methods, served as ``GET {url}/_sim/<name>``."""
# Test and demo tooling: requests may hang on purpose ("hang" faults), so there is no request deadline; its client
# (the exporter) connects from one address, which may use every connection.
LIMITS = ServerLimits(
    header_timeout=30.0, request_timeout=None, max_body_bytes=1 << 20, max_connections_per_address=128
)


class Simulator(CheckpointControl, ConnectorControl, ResourceControl):
    """A scriptable stand-in for Feldera's pipeline-manager.

    ``async with Simulator(scenario, clock=ManualClock()) as sim: ...`` serves on ``sim.url`` (port 0 picks a
    free port). Control methods are synchronous and take effect for the next request.
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_prefix: str = "/_sim",
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.world = World(scenario or Scenario(), self.clock)
        self.control_prefix = control_prefix.rstrip("/")
        self.faults: list[Fault] = []
        self.request_counts: Counter[str] = Counter()
        self._release = asyncio.Event()
        self._seen = asyncio.Condition()
        self._host = host
        self._port = port
        self._server: WebServer | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._release = asyncio.Event()
        self._seen = asyncio.Condition()
        app = web.Application(client_max_size=LIMITS.max_body_bytes)
        app.router.add_route("*", EVERY_PATH, self._handle)
        self._server = WebServer(app, self._host, self._port, limits=LIMITS, server_header="feldera-simulator")
        await self._server.start()

    async def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.port

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the simulator (the loopback address when serving on all
        interfaces)."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.listening.url()

    def requests(self, path: str = "*", method: str | None = None) -> int:
        """How many API requests (not control ones) matched the path glob and method so far."""
        total = 0
        for key, count in self.request_counts.items():
            verb, _, target = key.partition(" ")
            if (method is None or verb == method.upper()) and fnmatchcase(target, path):
                total += count
        return total

    async def wait_for_requests(self, path: str = "*", count: int = 1, *, method: str | None = None) -> int:
        """Wait until ``requests(path, method) >= count``; bound it with ``asyncio.timeout(...)``."""
        async with self._seen:
            await self._seen.wait_for(lambda: self.requests(path, method) >= count)
        return self.requests(path, method)

    # ---- control API: pipelines ----------------------------------------------------------------------------

    def pipeline(self, name: str) -> Pipeline:
        return self.world.get(name)

    def _now(self) -> float:
        return self.clock.now()

    def create_pipeline(self, spec: PipelineSpec | dict[str, Any]) -> str:
        """Add a pipeline (a scenario pipeline entry); returns its id."""
        parsed = spec if isinstance(spec, PipelineSpec) else PipelineSpec.model_validate(spec)
        return self.world.add(parsed).id

    def delete_pipeline(self, name: str) -> None:
        self.world.remove(self.world.get(name).name)

    def start_pipeline(self, name: str, status: str = "Running") -> str | None:
        """Deploy: ``Provisioning`` stops halfway; a runtime status (default Running) provisions a new process.

        Returns the incarnation uuid (``None`` while provisioning).
        """
        pipeline = self.world.get(name)
        pipeline.deploy(status, self._now())
        return pipeline.incarnation

    def set_status(self, name: str, status: str, desired: str | None = None) -> None:
        """Move to any combined status (Stopped, Provisioning, Stopping, or a runtime status) without a restart."""
        self.world.get(name).deploy(status, self._now(), desired=desired)

    def stop_pipeline(
        self, name: str, *, error_code: str | None = None, message: str | None = None, details: Any = None
    ) -> None:
        """Stop; with ``error_code`` the pipeline stops because of a deployment error (kept until next start)."""
        error = None
        if error_code is not None:
            error = {"message": message or error_code, "error_code": error_code, "details": details}
        self.world.get(name).stop(self._now(), error)

    def restart_pipeline(self, name: str, status: str = "Running") -> str:
        """The pipeline process restarts: new incarnation (checkpoint/sync status, connector stats reset)."""
        pipeline = self.world.get(name)
        now = self._now()
        if not pipeline.provisioned:
            pipeline.deploy(status, now)
        else:
            pipeline.new_incarnation(now)
            pipeline.deploy(status, now)
        assert pipeline.incarnation is not None
        return pipeline.incarnation

    def set_deployment_error(self, name: str, error_code: str | None, message: str = "", details: Any = None) -> None:
        """Set (or with ``error_code=None`` clear) ``deployment_error`` without changing the status."""
        pipeline = self.world.get(name)
        pipeline.deployment_error = (
            None if error_code is None else {"message": message, "error_code": error_code, "details": details}
        )
        pipeline.touch()

    def set_program_status(self, name: str, status: str, message: str | None = None) -> None:
        self.world.get(name).set_program_status(status, self._now(), message)

    def fail_compile(self, name: str, kind: str = "sql", message: str = "syntax error") -> None:
        """A compile failure: ``kind`` sql|rust|system -> SqlError|RustError|SystemError with program_error."""
        status = {"sql": "SqlError", "rust": "RustError", "system": "SystemError"}[kind]
        self.world.get(name).set_program_status(status, self._now(), message)

    # ---- control API: interaction errors, cluster, instance (checkpoints: CheckpointControl, connectors and
    # resets: ConnectorControl)

    def set_interaction_error(self, name: str, kind: str | None) -> None:
        """Force interaction endpoints to fail: unreachable (503), unavailable (503), initializing (503),
        suspended (503), terminating (410), initialization_error (500); ``None`` clears."""
        if kind is not None and kind not in INTERACTION_ERRORS:
            raise ValueError(f"unknown interaction error {kind!r}")
        self.world.get(name).interaction_fault = kind

    def set_runtime_status_reason(self, name: str, reason: str | None) -> None:
        """``deployment_runtime_status_details.reason`` is ``reason`` until the runtime status changes (``None``:
        what the status gives, see ``PipelineDocuments.runtime_status_details``)."""
        pipeline = self.world.get(name)
        pipeline.runtime_reason = None if reason is None else (pipeline.runtime.value, reason)
        pipeline.touch()

    def set_runtime_config(self, name: str, runtime_config: dict[str, Any]) -> int:
        """``PATCH`` the pipeline's ``runtime_config`` (keys over the current ones): only while stopped, fault
        tolerance and hosts only with cleared storage; returns the pipeline's ``version`` (bumped on a change)."""
        pipeline = self.world.get(name)
        pipeline.set_runtime_config(runtime_config)
        return pipeline.version

    def clear_storage(self, name: str) -> None:
        """``POST .../clear`` of a stopped pipeline: its checkpoints are gone, ``storage_status`` is ``Cleared``."""
        self.world.get(name).clear_storage()

    def set_cluster_health(self, service: str, healthy: bool, message: str | None = None) -> None:
        """What the cluster monitor's checks see from now on; stored (and answered) at its next check."""
        self.world.cluster.set_health(service, healthy, message, self._now())

    def stall_cluster_monitor(self, stalled: bool = True) -> None:
        """The cluster monitor stops storing events (its last one grows old) or, with ``False``, resumes."""
        self.world.cluster.stall(stalled, self._now())

    def set_edition(self, edition: str) -> None:
        """``enterprise``, ``enterprise_dev`` or ``community`` (new pipelines' ``platform_version`` follows); not
        ``community`` while a pipeline has fault tolerance, which the open-source build refuses."""
        if edition not in ("enterprise", "enterprise_dev", "community"):
            raise ValueError(f"unknown edition {edition!r}")
        for pipeline in self.world.pipelines.values() if edition == "community" else ():
            try:
                refuse_enterprise_features(pipeline.runtime_config, enterprise=False)
            except ValueError as exc:
                raise ValueError(f"pipeline {pipeline.name!r}: {exc}") from None
        self.world.edition = edition  # type: ignore[assignment]  # one of the literal's values: checked above

    def set_reset_api(self, reset_api: str | None) -> None:
        """``implemented``, ``stub`` (400 ``NotSupported``), ``absent`` (404), or ``None``: by edition and version."""
        if reset_api not in ("implemented", "stub", "absent", None):
            raise ValueError(f"unknown reset api {reset_api!r}")
        self.world.reset_api_override = reset_api  # type: ignore[assignment]  # one of the literal's values or None: checked above

    def upgrade_platform(self, version: str) -> None:
        """Feldera is upgraded to release ``version``: ``/v0/config`` and new pipelines report it; existing
        pipelines keep their ``platform_version`` until ``POST .../update_runtime``."""
        self.world.release = release(version)

    def set_sync_api(self, sync_api: str) -> None:
        """``current`` (202 checkpoint_uuid) or ``seed`` (200 checkpoint_sequence_number, 404 if none)."""
        if sync_api not in ("current", "seed"):
            raise ValueError(f"unknown sync api {sync_api!r}")
        self.world.sync_api = sync_api  # type: ignore[assignment]  # one of the literal's values: checked above

    def add_fault(self, fault: Fault | None = None, **fields: Any) -> Fault:
        """``add_fault(Fault("status", path="/v0/pipelines", status=500))`` or ``add_fault(kind=..., ...)``."""
        added = fault if fault is not None else Fault(**fields)
        self.faults.append(added)
        return added

    def clear_faults(self) -> None:
        """Remove every fault and release hanging requests."""
        self.faults.clear()
        self._release.set()
        self._release = asyncio.Event()

    def advance_clock(self, seconds: float) -> float:
        if not isinstance(self.clock, ManualClock):
            raise ValueError("the simulator runs on the wall clock; start it with a ManualClock to drive time")
        return self.clock.advance(seconds)

    def state(self) -> dict[str, Any]:
        """A compact summary of every pipeline (for the HTTP control API and debugging)."""
        self.world.tick()
        return {
            name: {
                "deployment_status": p.deployment_status,
                "deployment_desired_status": p.deployment_desired_status,
                "program_status": p.program.value,
                "incarnation_uuid": p.incarnation,
                "checkpoint_success": p.checkpoint_success,
                "checkpoint_failure": p.checkpoint_failure,
                "checkpoint_interval": p.checkpoint_interval,
                "stored_checkpoints": len(p.stored_checkpoints),
                "automatic_checkpoint_failures": p.automatic_failures,
                "memory_pressure": p.memory_pressure,
                "output_stall_seconds": p.stall_seconds(self._now()),
                "endpoints": [c.endpoint_name for c in p.connectors()],
            }
            for name, p in self.world.pipelines.items()
        }

    def database_writes(self) -> dict[str, Any]:
        """The manager-database writes API requests caused so far: ``{"total": N, "by_endpoint": {...}}``
        (each ``GET .../checkpoint_status`` is one, whatever the pipeline answered)."""
        writes = self.world.database_writes
        return {"total": sum(writes.values()), "by_endpoint": dict(sorted(writes.items()))}

    def requests_by_endpoint(self) -> dict[str, int]:
        """API requests so far by endpoint: ``METHOD`` and path with the pipeline, table, view and connector
        names replaced by ``{pipeline}``, ``{table}``, ``{view}``, ``{connector}``."""
        counts: Counter[str] = Counter()
        for key, count in self.request_counts.items():
            verb, _, path = key.partition(" ")
            counts[f"{verb} {endpoint_of(path)}"] += count
        return dict(sorted(counts.items()))

    # ---- HTTP ----------------------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        raw = request.rel_url.raw_path
        self.world.tick()
        if raw == self.control_prefix or raw.startswith(self.control_prefix + "/"):
            return self._control(request, raw[len(self.control_prefix) :], await request.read())
        path = request.path
        self.request_counts[f"{request.method} {path}"] += 1
        async with self._seen:
            self._seen.notify_all()
        truncate = False
        for fault in list(self.faults):
            if not fault.matches(request.method, path):
                continue
            fault.consume()
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
                continue
            if fault.kind == "hang":
                await self._release.wait()
                break
            if fault.kind == "status":
                return errors.error(fault.status, "InjectedFault", f"Injected fault for {path}")
            if fault.kind == "html":
                return errors.response(502, HTML_502, "text/html")
            if fault.kind == "malformed":
                return errors.response(200, MALFORMED_JSON, errors.JSON)
            truncate = True
            break
        if self.world.api_key is not None and request.headers.get("authorization") != f"Bearer {self.world.api_key}":
            return errors.unauthorized()
        response = self._route(request)
        if truncate and isinstance(response.body, bytes):
            response.body = response.body[: max(1, len(response.body) // 2)]
        return response

    def _route(self, request: Request) -> Response:
        parts = [unquote(p) for p in request.rel_url.raw_path.split("/")[1:]]
        method = request.method
        if parts == ["v0", "cluster_healthz"]:
            if method != "GET":
                return _method_not_allowed()
            body = self.world.cluster.body(self._now())
            if body is None:
                return errors.no_cluster_events()
            return errors.json_response(200 if body["all_healthy"] else 503, body)
        if parts == ["v0", "config"]:
            if method != "GET":
                return _method_not_allowed()
            return errors.json_response(200, self.world.config_body())
        if parts == ["v0", "metrics"]:
            if method != "GET":
                return _method_not_allowed()
            return errors.response(200, manager_metrics(self.world, self._now()), "text/plain")
        if len(parts) < 2 or parts[:2] != ["v0", "pipelines"]:
            return errors.response(404)
        if len(parts) == 2:
            if method != "GET":
                return _method_not_allowed()
            selector = request.query.get("selector", "all")
            if selector not in SELECTORS:
                return _bad_selector(selector)
            return errors.response(200, self.world.list_body(selector), errors.JSON)
        name = parts[2]
        rest = parts[3:]
        pipeline = self.world.pipelines.get(name)
        expected = expected_method(
            rest, reset_route=self.world.reset_api != "absent", output_actions=serves_output_paused(self.world.release)
        )
        if expected is None:
            return errors.response(404)
        if method != expected:
            return _method_not_allowed()
        if rest == ["checkpoint", "sync"] and not self.world.enterprise:
            return errors.enterprise_feature("checkpoint")
        if pipeline is None:
            return errors.unknown_pipeline(name)
        if rest == ["checkpoint_status"]:
            self.world.count_write("checkpoint_status")
        if rest == ["update_runtime"]:
            try:
                pipeline.update_runtime(self.world.platform_version, self._now())
            except ValueError as exc:
                return errors.error(400, "UpdateRestrictedToStopped", str(exc))
            return errors.response(200, pipeline.fragment("all"), errors.JSON)
        if not rest:
            selector = request.query.get("selector", "all")
            if selector not in SELECTORS:
                return _bad_selector(selector)
            return errors.response(200, pipeline.fragment(selector), errors.JSON)
        return interact(self.world, pipeline, rest, request.query, self._now())

    def _control(self, request: Request, action: str, body: bytes) -> Response:
        method = action.strip("/")
        if request.method == "GET" and method in CONTROL_QUERIES:
            query = self.requests_by_endpoint if method == "requests" else getattr(self, method)
            return errors.json_response(200, query())
        if request.method != "POST" or method not in CONTROL_METHODS:
            return errors.json_response(404, {"error": f"unknown control action {method!r}"})
        try:
            kwargs = json.loads(body or b"{}")
            if not isinstance(kwargs, dict):
                raise TypeError("the body must be a JSON object of keyword arguments")
            result = getattr(self, method)(**kwargs)
        except KeyError as exc:
            return errors.json_response(404, {"error": str(exc)})
        except (TypeError, ValueError) as exc:
            return errors.json_response(400, {"error": str(exc)})
        if isinstance(result, Fault):
            result = asdict(result)
        return errors.json_response(200, {"result": result})


def endpoint_of(path: str) -> str:
    """``/v0/pipelines/orders/tables/t/connectors/c/stats`` -> ``/v0/pipelines/{pipeline}/tables/{table}/...``."""
    parts = path.split("/")
    if parts[1:3] != ["v0", "pipelines"] or len(parts) < 4:
        return path
    parts[3] = "{pipeline}"
    if len(parts) >= 8 and parts[4] in ("tables", "views") and parts[6] == "connectors":
        parts[5] = "{table}" if parts[4] == "tables" else "{view}"
        parts[7] = "{connector}"
    return "/".join(parts)


def _method_not_allowed() -> Response:
    return errors.response(405)


def _bad_selector(selector: str) -> Response:
    text = (
        f"Query deserialize error: unknown variant `{selector}`, "
        "expected one of `all`, `status`, `status_with_connectors`"
    )
    return errors.response(400, text.encode(), "text/plain; charset=utf-8")
