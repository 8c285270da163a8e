"""Validate Feldera API response bodies against the vendored OpenAPI 3.0 schemas (``tests/schemas``).

OpenAPI 3.0 ``nullable: true`` is rewritten to ``anyOf: [schema, {"type": "null"}]`` so a JSON Schema validator
can check it. :func:`check_response` picks the schema from the request path and status.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft7Validator

SUBSET = Path(__file__).resolve().parents[1] / "schemas" / "feldera_openapi_subset.json"

_P = r"/v0/pipelines/[^/]+"
ROUTES: tuple[tuple[str, str, dict[int, str]], ...] = (
    ("GET", r"/v0/pipelines", {200: "[PipelineSelectedInfo]"}),
    ("GET", _P, {200: "PipelineSelectedInfo"}),
    ("GET", _P + r"/checkpoint_status", {200: "CheckpointStatus"}),
    ("POST", _P + r"/checkpoint/sync", {202: "CheckpointSyncResponse", 200: "CheckpointResponse"}),
    ("GET", _P + r"/checkpoint/sync_status", {200: "CheckpointSyncStatus"}),
    ("GET", _P + r"/stats", {200: "ControllerStatus"}),
    ("GET", _P + r"/tables/[^/]+/connectors/[^/]+/stats", {200: "InputEndpointStatus"}),
    ("GET", _P + r"/views/[^/]+/connectors/[^/]+/stats", {200: "OutputEndpointStatus"}),
    ("GET", r"/v0/cluster_healthz", {200: "HealthStatus", 503: "HealthStatus"}),
    ("GET", r"/v0/config", {200: "Configuration"}),
    ("GET", _P + r"/reset_status", {}),
    ("POST", _P + r"/update_runtime", {200: "PipelineInfo"}),
)


def nullable_to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [nullable_to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    converted = {k: nullable_to_json_schema(v) for k, v in node.items() if k not in ("nullable", "discriminator")}
    if node.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def _document() -> dict[str, Any]:
    return nullable_to_json_schema(json.loads(SUBSET.read_text(encoding="utf-8")))


@functools.cache
def validator(schema_name: str) -> Draft7Validator:
    if schema_name.startswith("["):
        root: dict[str, Any] = {"type": "array", "items": {"$ref": f"#/components/schemas/{schema_name[1:-1]}"}}
    else:
        root = {"$ref": f"#/components/schemas/{schema_name}"}
    return Draft7Validator({**root, "components": _document()["components"]})


def schema_for(method: str, path: str, status: int) -> str | None:
    """The schema a response must satisfy; Feldera errors (4xx/5xx with JSON) are ``ErrorResponse``."""
    for verb, pattern, by_status in ROUTES:
        if verb == method and re.fullmatch(pattern, path):
            if status in by_status:
                return by_status[status]
            return None if status < 400 else "ErrorResponse"
    return None


def errors_in(schema_name: str, body: object) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(schema_name).iter_errors(body)
    ]


def check_response(response: httpx.Response) -> str | None:
    """Assert the body matches its schema; returns the schema name used.

    ``None``: no schema applies (non-JSON bodies such as a framework's plain-text 400 or a proxy's HTML 502).
    """
    request = response.request
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    schema = schema_for(request.method, request.url.path, response.status_code)
    if schema is None:
        return None
    problems = errors_in(schema, response.json())
    assert not problems, f"{request.method} {request.url.path} -> {response.status_code} violates {schema}: {problems}"
    return schema


async def _checked(response: httpx.Response) -> None:
    await response.aread()
    check_response(response)


def checked_client(base_url: str) -> httpx.AsyncClient:
    """A client whose every JSON answer is checked against the published OpenAPI spec (:func:`check_response`)."""
    return httpx.AsyncClient(base_url=base_url, event_hooks={"response": [_checked]})
