"""Feldera error bodies (``{"message", "error_code", "details"}``), shaped like pipeline-manager's.

Texts follow the examples in the OpenAPI document and ``docs/feldera-api.md``; the HTTP status and
``error_code`` are what clients should key on.
"""

from __future__ import annotations

import json

from aiohttp.web import Response

JSON = "application/json"


def response(
    status: int = 200, body: bytes = b"", content_type: str | None = None, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A response with exactly these headers (``content_type`` as given, parameters included; None: no header)."""
    all_headers = list(headers or [])
    if content_type is not None:
        all_headers.append(("Content-Type", content_type))
    return Response(status=status, body=body, headers=all_headers)


def json_response(status: int, body: object, headers: list[tuple[str, str]] | None = None) -> Response:
    return response(status, dumps(body), JSON, headers)


def dumps(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def error(status: int, error_code: str, message: str, details: object = None, **kw: str) -> Response:
    headers = [(k.replace("_", "-").title(), v) for k, v in kw.items()]
    return json_response(status, {"message": message, "error_code": error_code, "details": details}, headers)


def _ident(pipeline_id: str, name: str) -> str:
    return f'pipeline-id={pipeline_id} pipeline-name="{name}"'


def unknown_pipeline(name: str) -> Response:
    return error(404, "UnknownPipelineName", f"Unknown pipeline name '{name}'", {"pipeline_name": name})


def not_deployed(pipeline_id: str, name: str, status: str, desired_status: str) -> Response:
    message = (
        f"Unable to interact with pipeline because the deployment status ({status.lower()}) indicates it is not "
        f"(yet) fully provisioned {_ident(pipeline_id, name)}"
    )
    details = {"pipeline_name": name, "status": status, "desired_status": desired_status}
    return error(503, "PipelineInteractionNotDeployed", message, details, retry_after="5")


def unavailable(pipeline_id: str, name: str) -> Response:
    message = (
        "Unable to interact with pipeline because its runtime is unavailable: the pipeline runner cannot "
        f"currently reach the pipeline process {_ident(pipeline_id, name)}"
    )
    return error(503, "PipelineUnavailable", message, {"pipeline_name": name})


def unreachable(pipeline_id: str, name: str, request: str) -> Response:
    reason = (
        "timeout (10s) was reached: this means the pipeline took too long to respond -- this can simply be "
        "because the request was too difficult to process in time, or other reasons (e.g., deadlock): the "
        "pipeline logs might contain additional information (original send request error: Timeout while "
        "waiting for response)"
    )
    message = f"Error sending HTTP request to pipeline: {reason} Failed request: {request} {_ident(pipeline_id, name)}"
    return error(
        503,
        "PipelineInteractionUnreachable",
        message,
        {"pipeline_name": name, "request": request, "error": reason},
    )


def initializing() -> Response:
    return error(503, "Initializing", "The pipeline is initializing; retry the request once it is running")


def suspended() -> Response:
    return error(503, "Suspended", "The pipeline has been suspended; resume it to interact with it")


def terminating() -> Response:
    return error(410, "Terminating", "The pipeline is terminating and no longer accepts requests")


def initialization_error(reason: str) -> Response:
    return error(500, "InitializationError", f"Pipeline failed to initialize: {reason}", {"error": reason})


def enterprise_feature(feature: str) -> Response:
    """``CommonError::EnterpriseFeature`` (``crates/pipeline-manager/src/common_error.rs``)."""
    message = f"Cannot use enterprise-only feature ({feature}) in Feldera community edition."
    return error(501, "EnterpriseFeature", message, {"feature": feature})


def not_supported(what: str) -> Response:
    """``ControllerError::NotSupported`` of a pipeline (``crates/adapterlib/src/errors/controller.rs``: 400)."""
    return error(400, "NotSupported", f"Not supported: {what}", {"error": what})


def no_cluster_events() -> Response:
    """``DBError::NoClusterMonitorEventsAvailable`` (``crates/pipeline-manager/src/db/error.rs``: 404)."""
    return error(404, "NoClusterMonitorEventsAvailable", "There are not yet any cluster monitor events recorded")


def unknown_input_endpoint(endpoint: str) -> Response:
    return error(404, "UnknownInputEndpoint", f"Unknown input endpoint '{endpoint}'", {"endpoint_name": endpoint})


def unknown_output_endpoint(endpoint: str) -> Response:
    return error(404, "UnknownOutputEndpoint", f"Unknown output endpoint '{endpoint}'", {"endpoint_name": endpoint})


def unauthorized() -> Response:
    return error(
        401,
        "Unauthorized",
        "Unauthorized: provide a valid API key or JWT in the 'Authorization: Bearer' header",
    )
