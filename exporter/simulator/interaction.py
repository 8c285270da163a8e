"""The pipeline interaction endpoints: ``/v0/pipelines/{p}/...`` that the pipeline process answers, as the real
server does (``checkpoint_status``, ``stats``, connector stats, ``reset_status``, ``checkpoint/sync`` and
``checkpoint/sync_status``), including the errors of a pipeline that cannot answer (not deployed, unreachable,
initializing, suspended, ...). The route table that leads here is ``Simulator._route`` in
:mod:`exporter.simulator.server`; what the build serves (reset endpoint, connector error lists, the sync
``running`` list) is decided in :mod:`exporter.simulator.platform`.

Connectors are paused and started with ``POST .../tables/{t}/connectors/{c}/pause`` (``start``), which the manager
forwards to the pipeline (``crates/pipeline-manager/src/api/endpoints/pipeline_interaction.rs``,
``post_pipeline_input_connector_action``; ``crates/adapters/src/server.rs``, ``pause_input_endpoint``: 200 with
an empty body), and on builds with pausable output connectors (:mod:`exporter.simulator.platform`) with
``POST .../views/{v}/connectors/{c}/pause`` (``start``), as the official client 0.369 sends them
(``feldera/rest/feldera_client.py``, ``pause_output_connector``). The connector's counters advance
before the change, so the paused stretch counts nothing.

Upstream (``crates/adapters/src/server.rs``): ``stats`` takes ``include_connector_errors`` (a boolean; anything
else is a 400 from the query parser) and then lists every connector's recent errors; ``checkpoint/sync`` answers 400
with error code ``"400"`` both on a multi-host pipeline and when there is no checkpoint yet, told apart only by the
message; ``checkpoint/sync_status`` is forwarded on every edition (only ``POST .../checkpoint/sync`` is
Enterprise-only in the manager), so the open-source edition answers it with nothing to report.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp.web import Response

from exporter.simulator import errors
from exporter.simulator.connectors import UnknownEndpoint
from exporter.simulator.model import Pipeline, World
from exporter.simulator.platform import serves_connector_errors, serves_output_paused, serves_sync_running
from exporter.simulator.runtime import hosts

INTERACTION_ERRORS = ("unreachable", "unavailable", "initialization_error", "terminating", "initializing", "suspended")
"""What ``Simulator.set_interaction_error`` can force on a pipeline's interaction endpoints."""


MULTIHOST_SYNC = (
    "checkpoint sync is not supported directly on multihost pipelines; sync requests must go through the "
    "coordinator via `/coordination/checkpoint/push`"
)
NO_CHECKPOINT_SYNC = "no checkpoints found; make a POST request to `/checkpoint` to make a new checkpoint"
RESET_STUB = "reset status is not yet available on this pipeline"


def expected_method(rest: list[str], *, reset_route: bool = True, output_actions: bool = True) -> str | None:
    """The method of ``/v0/pipelines/{p}/<rest>`` (``rest`` = the path segments after the name), None: no route
    (``reset_route=False``: a build without ``reset_status``; ``output_actions=False``: one without pausable output
    connectors)."""
    if rest in ([], ["checkpoint_status"], ["stats"], ["checkpoint", "sync_status"]):
        return "GET"
    if rest == ["reset_status"]:
        return "GET" if reset_route else None
    if rest in (["checkpoint", "sync"], ["update_runtime"]):
        return "POST"
    if len(rest) == 5 and rest[0] in ("tables", "views") and rest[2] == "connectors":
        if rest[4] == "stats":
            return "GET"
        if rest[4] in ("pause", "start") and (rest[0] == "tables" or output_actions):
            return "POST"
    return None


def interact(world: World, pipeline: Pipeline, rest: list[str], query: Mapping[str, str], now: float) -> Response:
    """The answer of ``pipeline`` to an interaction request (its route and method already checked)."""
    endpoint = "/" + "/".join(rest)
    blocked = _gate(pipeline, endpoint, allow_initializing=rest == ["checkpoint_status"])
    if blocked is not None:
        return blocked
    pipeline.advance(now)
    if rest == ["checkpoint_status"]:
        return errors.json_response(
            200, {"success": pipeline.checkpoint_success, "failure": pipeline.checkpoint_failure}
        )
    if rest == ["stats"]:
        with_errors = False
        if serves_connector_errors(world.release):
            flag = query.get("include_connector_errors", "false")
            if flag not in ("true", "false"):
                return errors.response(
                    400,
                    f"Query deserialize error: invalid value: string {flag!r}, expected a boolean".encode(),
                    "text/plain; charset=utf-8",
                )
            with_errors = flag == "true"
        paused = serves_output_paused(world.release)
        return errors.json_response(200, pipeline.render_stats(now, with_errors, output_paused=paused))
    if rest == ["reset_status"]:
        if world.reset_api == "stub":
            return errors.not_supported(RESET_STUB)
        return _reset_status(pipeline, query.get("token"))
    if rest[0] in ("tables", "views"):
        is_input = rest[0] == "tables"
        try:
            connector = pipeline.find_connector(rest[1], rest[3], is_input)
        except UnknownEndpoint as exc:
            missing = str(exc.args[0])
            return errors.unknown_input_endpoint(missing) if is_input else errors.unknown_output_endpoint(missing)
        if rest[4] in ("pause", "start"):
            connector.paused = rest[4] == "pause"
            pipeline.touch()
            return errors.response(200)
        return errors.json_response(200, connector.render(True, output_paused=serves_output_paused(world.release)))
    if rest == ["checkpoint", "sync"]:
        return _sync(world, pipeline)
    wanted = query.get("incarnation_uuid")
    if wanted and wanted != pipeline.incarnation:
        return errors.error(
            400,
            "IncarnationUuidMismatch",
            f"incarnation_uuid {wanted} does not match the pipeline's current incarnation",
        )
    status: dict[str, object] = {
        "success": pipeline.sync_success,
        "failure": pipeline.sync_failure,
        "periodic": pipeline.sync_periodic,
    }
    if serves_sync_running(world.release):
        status["running"] = list(pipeline.sync_pending)
    return errors.json_response(200, status)


def _gate(pipeline: Pipeline, endpoint: str, *, allow_initializing: bool) -> Response | None:
    if not pipeline.provisioned:
        return errors.not_deployed(
            pipeline.id, pipeline.name, str(pipeline.resources.value), str(pipeline.resources_desired.value)
        )
    fault = pipeline.interaction_fault
    runtime = pipeline.runtime.value
    if fault == "unreachable":
        return errors.unreachable(pipeline.id, pipeline.name, endpoint)
    if fault == "initialization_error":
        return errors.initialization_error("failed to open storage: permission denied")
    if fault == "terminating":
        return errors.terminating()
    if fault == "unavailable" or runtime == "Unavailable":
        return errors.unavailable(pipeline.id, pipeline.name)
    if fault == "initializing" or (runtime == "Initializing" and not allow_initializing):
        return errors.initializing()
    if fault == "suspended" or runtime == "Suspended":
        return errors.suspended()
    return None


def _sync(world: World, pipeline: Pipeline) -> Response:
    if world.sync_api == "seed":
        if pipeline.checkpoint_success is None:
            return errors.error(404, "404", "No checkpoints found")
        return errors.json_response(200, {"checkpoint_sequence_number": pipeline.checkpoint_success})
    if hosts(pipeline.runtime_config) > 1:
        return errors.error(400, "400", MULTIHOST_SYNC)
    if not pipeline.stored_checkpoints:
        return errors.error(400, "400", NO_CHECKPOINT_SYNC)
    target = str(pipeline.stored_checkpoints[-1]["uuid"])
    if pipeline.sync_mode == "success":
        pipeline.sync_success = target
    elif pipeline.sync_mode == "failure":
        pipeline.sync_failure = {"uuid": target, "error": "failed to upload checkpoint: access denied"}
    else:
        pipeline.sync_pending.append(target)
    return errors.json_response(202, {"checkpoint_uuid": target, "incarnation_uuid": pipeline.incarnation})


def _reset_status(pipeline: Pipeline, token: str | None) -> Response:
    entry = pipeline.reset_tokens.get(token or "")
    if entry is None:
        return errors.error(400, "InvalidResetToken", f"Invalid reset token '{token or ''}'", {"token": token})
    incarnation, status = entry
    if incarnation != pipeline.incarnation:
        return errors.error(
            410,
            "ResetTokenFromPreviousIncarnation",
            "Reset token was created by a previous incarnation of the pipeline; the server cannot validate "
            "the reset across incarnations. Reissue the reset.",
            {"token": token},
        )
    return errors.json_response(200, {"token": token, "status": status})
