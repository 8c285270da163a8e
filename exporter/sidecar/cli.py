"""``feldera-exporter watch-reset``: register, list or remove reset watches on a running exporter.

The command talks to the exporter's own HTTP endpoint (``/api/v1/reset-watches``), so it works wherever the
exporter runs (container, other host); it authenticates with basic auth when the exporter's web config asks for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from exporter.argtypes import http_url, positive_seconds
from exporter.sidecar.routes import PREFIX

DEFAULT_EXPORTER_URL = "http://localhost:10027"
ENV_URL = "FELDERA_EXPORTER_URL"
ENV_USER = "FELDERA_EXPORTER_BASIC_AUTH_USER"
ENV_PASSWORD = "FELDERA_EXPORTER_BASIC_AUTH_PASSWORD"


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "watch-reset",
        help="register (or --list, --remove) output-connector reset watches on a running exporter",
        description=(
            "Ask a running exporter to watch an output-connector reset token (GET reset_status each poll cycle) "
            "and expose its state as feldera_output_reset_watch_status. TOKEN '-' reads the token from stdin."
        ),
    )
    parser.add_argument("pipeline", nargs="?", metavar="PIPELINE")
    parser.add_argument("token", nargs="?", metavar="TOKEN")
    parser.add_argument("--name", help="watch name (label value `watch`); default PIPELINE-<token hash>")
    parser.add_argument("--target", help="Feldera target name from the exporter's config (default: the first)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list the exporter's watches")
    action.add_argument("--remove", metavar="NAME", help="remove the watch NAME")
    parser.add_argument(
        "--exporter",
        type=http_url,
        default=os.environ.get(ENV_URL, DEFAULT_EXPORTER_URL),
        help=f"exporter base URL (env {ENV_URL}; default {DEFAULT_EXPORTER_URL})",
    )
    parser.add_argument("--basic-auth-user", default=os.environ.get(ENV_USER), help=f"user (env {ENV_USER})")
    parser.add_argument(
        "--basic-auth-password-file",
        type=Path,
        help=f"file holding the basic-auth password (else env {ENV_PASSWORD})",
    )
    parser.add_argument("--ca-file", type=Path, help="CA bundle to verify the exporter's TLS certificate")
    parser.add_argument("--timeout", type=positive_seconds, default=10.0, help="seconds (default 10)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 done, 1 the exporter refused or could not be reached, 2 usage error."""
    try:
        auth = _auth(args)
        request = _request(args)
    except ValueError as exc:
        print(f"watch-reset: {exc}", file=sys.stderr)
        return 2
    try:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else True
    except OSError as exc:
        print(f"watch-reset: cannot read --ca-file {args.ca_file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    method, path, body = request
    url = args.exporter.rstrip("/") + path
    try:
        deadline = aiohttp.ClientTimeout(total=args.timeout)
        response = asyncio.run(_send(method, url, body, auth=auth, verify=verify, deadline=deadline))
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        reason = f"no answer within {args.timeout:g}s" if isinstance(exc, TimeoutError) else exc
        print(f"watch-reset: cannot reach the exporter at {args.exporter}: {reason}", file=sys.stderr)
        return 1
    if response.status >= 400:
        print(f"watch-reset: the exporter answered {response.status}: {_error_text(response)}", file=sys.stderr)
        return 1
    try:
        print(_done(args, response))
    except (ValueError, LookupError, TypeError):  # not JSON, or not the shape of the reset-watch API
        print(
            f"watch-reset: {args.exporter} answered {response.status} with something other than the exporter's "
            f"reset-watch API: {_excerpt(response)}",
            file=sys.stderr,
        )
        return 1
    return 0


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def _send(
    method: str,
    url: str,
    body: dict[str, str] | None,
    *,
    auth: str | None,
    verify: ssl.SSLContext | bool,
    deadline: aiohttp.ClientTimeout,
) -> _Answer:
    headers = {"Authorization": auth} if auth is not None else None
    async with (
        aiohttp.ClientSession(timeout=deadline, trust_env=True) as session,  # HTTP(S)_PROXY, NO_PROXY, .netrc
        session.request(method, url, json=body, headers=headers, ssl=verify) as response,
    ):
        return _Answer(response.status, response.reason or "", await response.read())


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, str] | None]:
    if args.list or args.remove is not None:
        if args.pipeline is not None:
            raise ValueError("PIPELINE/TOKEN cannot be combined with --list or --remove")
        if args.list:
            return "GET", PREFIX, None
        return "DELETE", f"{PREFIX}/{quote(args.remove, safe='')}", None
    if args.pipeline is None or args.token is None:
        raise ValueError("PIPELINE and TOKEN are required (or use --list / --remove NAME)")
    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    body = {"pipeline": args.pipeline, "token": token}
    if args.name is not None:
        body["name"] = args.name
    if args.target is not None:
        body["target"] = args.target
    return "POST", PREFIX, body


def _auth(args: argparse.Namespace) -> str | None:
    """The ``Authorization`` header value, if basic auth is asked for."""
    if not args.basic_auth_user:
        return None
    if args.basic_auth_password_file is not None:
        try:
            password = args.basic_auth_password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read {args.basic_auth_password_file}: {exc.strerror}") from exc
    else:
        password = os.environ.get(ENV_PASSWORD)
        if password is None:
            raise ValueError(f"--basic-auth-user needs {ENV_PASSWORD} or --basic-auth-password-file")
    return aiohttp.encode_basic_auth(args.basic_auth_user, password)


def _done(args: argparse.Namespace, response: _Answer) -> str:
    """What a successful answer says, for the terminal; raises on an answer of another shape."""
    if response.status == 204:
        return f"removed {args.remove}"
    document = response.json()
    if args.list:
        watches = document["watches"]
        if not isinstance(watches, list):
            raise TypeError("watches is not a list")
        return _table(watches) if watches else "no reset watches"
    return f"watching {document['name']} ({document['target']}/{document['pipeline']}): {document['status']}"


LIST_COLUMNS = ("NAME", "TARGET", "PIPELINE", "STATUS", "AGE", "CHECKED", "FINISHED")
"""``--list``: one row per watch; AGE since it was registered, CHECKED and FINISHED as time ago (``-``: not yet)."""


def _table(watches: list[Any]) -> str:
    """The watches of ``GET /api/v1/reset-watches`` as an aligned table; raises on entries of another shape."""
    rows: list[tuple[str, ...]] = [LIST_COLUMNS]
    for watch in watches:
        age = float(watch["age_seconds"])
        now = float(watch["registered_at"]) + age  # the exporter's clock, not this machine's
        cells = (watch["name"], watch["target"], watch["pipeline"], watch["status"])
        if not all(isinstance(cell, str) for cell in cells):
            raise TypeError("name, target, pipeline and status are not all strings")
        rows.append((*cells, _duration(age), _ago(watch["last_checked"], now), _ago(watch["finished_at"], now)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(LIST_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _ago(when: Any, now: float) -> str:
    return "-" if when is None else f"{_duration(now - float(when))} ago"


def _duration(seconds: float) -> str:
    """``45s``, ``5m12s``, ``3h4m``, ``2d3h``: two units at most, as kubectl shows ages."""
    whole = max(int(seconds), 0)
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size}{unit}{rest}{smaller}" if rest else f"{whole // size}{unit}"
    return f"{whole}s"


def _error_text(response: _Answer) -> str:
    try:
        document = response.json()
    except ValueError:
        return _excerpt(response)
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])
    return response.reason


def _excerpt(response: _Answer) -> str:
    return response.body[:200].decode("utf-8", errors="replace").strip() or response.reason
