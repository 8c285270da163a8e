"""The exporter's HTTP API for reset watches (served behind the same TLS/basic-auth as ``/metrics``).

* ``GET /api/v1/reset-watches`` -> 200 ``{"watches": [...]}`` (tokens are never echoed)
* ``POST /api/v1/reset-watches`` with JSON ``{"pipeline", "token", "name"?, "target"?}`` -> 201 the watch
* ``DELETE /api/v1/reset-watches/{name}`` -> 204, or 404 when there is no such watch
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import unquote

from exporter.httpserver import Request, Response
from exporter.sidecar.resets import ResetWatches, WatchError, describe

PREFIX = "/api/v1/reset-watches"


def _json(status: int, document: object) -> Response:
    return Response(status=status, body=json.dumps(document).encode() + b"\n", content_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class ResetWatchRoutes:
    def __init__(self, watches: ResetWatches, clock: Callable[[], float]) -> None:
        self._watches = watches
        self._clock = clock

    @staticmethod
    def matches(path: str) -> bool:
        return path == PREFIX or path.startswith(f"{PREFIX}/")

    async def handle(self, request: Request) -> Response:
        raw = request.raw_path.rstrip("/")
        if raw == PREFIX:
            if request.method in ("GET", "HEAD"):
                return _json(200, {"watches": describe(self._watches.watches(), self._clock())})
            if request.method == "POST":
                return self._register(request)
            return _method_not_allowed("GET, HEAD, POST")
        name = unquote(raw.removeprefix(f"{PREFIX}/"))
        if request.method != "DELETE":
            return _method_not_allowed("DELETE")
        if not self._watches.remove(name):
            return _error(404, "no such watch")
        return Response(status=204, content_type=None)

    def _register(self, request: Request) -> Response:
        if "json" not in request.headers.get("content-type", "application/json"):
            return _error(415, "send application/json")
        try:
            document = json.loads(request.body or b"null")
        except ValueError:
            return _error(400, "body is not valid JSON")
        if not isinstance(document, dict):
            return _error(400, 'body must be a JSON object {"pipeline": ..., "token": ...}')
        unknown = sorted(set(document) - {"pipeline", "token", "name", "target"})
        if unknown:
            return _error(400, f"unknown field(s): {', '.join(unknown)}")
        try:
            watch = self._watches.register(
                document.get("pipeline"),  # type: ignore[arg-type]
                document.get("token"),  # type: ignore[arg-type]
                name=document.get("name"),
                target=document.get("target"),
            )
        except WatchError as exc:
            return _error(exc.status, str(exc))
        return _json(201, describe([watch], self._clock())[0])


def _method_not_allowed(allow: str) -> Response:
    response = _error(405, "method not allowed")
    response.headers.append(("allow", allow))
    return response
