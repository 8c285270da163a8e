"""TLS and basic auth for the exporter's own endpoint, in the Prometheus exporter-toolkit web-config format.

The file given by ``--web.config.file`` / ``web.config_file`` looks like this (every section optional)::

    tls_server_config:
      cert_file: server.crt            # relative paths are resolved against the web-config file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # NoClientCert (default) | VerifyClientCertIfGiven | ...
      client_ca_file: ca.crt
      min_version: TLS12               # TLS10 | TLS11 | TLS12 (default) | TLS13
      max_version: TLS13
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':\\n')

Differences from the Go toolkit, all reported as errors at load time rather than silently ignored:
``RequestClientCert`` and ``RequireAnyClientCert`` (Python's ``ssl`` module cannot ask for a client certificate
without verifying it), ``cipher_suites``, ``curve_preferences``, ``prefer_server_cipher_suites``,
``client_allowed_sans``, inline ``cert``/``key``/``client_ca`` and ``http_server_config.rate_limit``.
``http_server_config.http2`` is accepted; the endpoint speaks HTTP/1.1 only. Response headers are checked as the
toolkit does: only its five names (exact spelling), ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options``
``deny`` or ``sameorigin``.

:class:`WebSecurity` re-reads the file, and reloads the certificates, when any of them changes (checked every
second in a background thread, never in a request): cert-manager's rotation takes effect for new connections
without a restart. A changed file that is invalid is logged once and the configuration in force is kept (it is
tried again when a file changes again: one in force or one the new web config names, such as a certificate that
was not there yet); switching TLS on or off needs a restart.

Basic-auth passwords are checked with bcrypt (deliberately slow) in a dedicated pool of two threads, so that a
flood of wrong passwords queues there and cannot delay scrapes, polls or rendering; a successful check is
remembered as a SHA-256 digest so that Prometheus' scrape every few seconds does not pay bcrypt's cost each time.
Unknown users are checked against a configured hash so that response timing does not reveal user names. A request
waiting for bcrypt sets its connection's slot aside (:func:`exporter.webserver.slot_set_aside`); at most
:data:`MAX_AUTH_WAITING` wait at once, :data:`MAX_AUTH_WAITING_PER_ADDRESS` per address, and every refusal closes
its connection, so wrong passwords hold no slot a scraper needs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from exporter import validation, yamlerror
from exporter.logsafe import clean
from exporter.ownthread import in_own_thread
from exporter.webserver import Handler, slot_set_aside

log = logging.getLogger(__name__)

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

_TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
_UNSUPPORTED_TLS_KEYS = ("cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans")
# The exporter-toolkit accepts only these response headers in http_server_config.headers (names spelt exactly so),
# and for two of them only these values.
_ALLOWED_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_AUTH_CACHE_SIZE = 64
BCRYPT_THREADS = 2
BCRYPT_NICE = 19
"""The ``nice`` value of the bcrypt threads: the lowest priority, so password checks use only CPU the rest of the
exporter leaves."""
MAX_AUTH_WAITING = 16
"""Password checks waiting for (or in) the bcrypt pool at once; more are answered 503 unchecked. At cost 12 (about
0.25 s a check) the last of them waits about 2 s."""
MAX_AUTH_WAITING_PER_ADDRESS = 4
"""Of those, from one remote address; more are answered 429 unchecked."""
RELOAD_CHECK_SECONDS = 1.0


class WebConfigError(Exception):
    """The web-config file cannot be used; ``str()`` is one ``location: message`` line per problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"

    @model_validator(mode="before")
    @classmethod
    def _reject_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _UNSUPPORTED_TLS_KEYS:
                if key in data:
                    raise ValueError(f"{key} is not supported by feldera-exporter; remove it")
            for key in ("cert", "key", "client_ca"):
                if key in data:
                    raise ValueError(f"inline {key} is not supported by feldera-exporter; use {key}_file")
        return data

    @model_validator(mode="after")
    def _check_client_auth(self) -> TLSServerConfig:
        if self.client_auth_type in _UNVERIFIED_CLIENT_AUTH:
            raise ValueError(
                f"client_auth_type {self.client_auth_type} is not supported (Python's ssl module verifies every "
                "client certificate it asks for); use VerifyClientCertIfGiven or RequireAndVerifyClientCert "
                "with client_ca_file"
            )
        if self.client_auth_type != "NoClientCert" and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if self.client_auth_type == "NoClientCert" and self.client_ca_file is not None:
            raise ValueError("client_ca_file is set but client_auth_type is NoClientCert; set client_auth_type")
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            raise ValueError(f"min_version {self.min_version} is newer than max_version {self.max_version}")
        return self


class HTTPServerConfig(_Strict):
    headers: dict[str, str] = Field(default_factory=dict)
    http2: bool = True
    """Accepted for compatibility with the exporter-toolkit; the endpoint speaks HTTP/1.1."""

    @model_validator(mode="before")
    @classmethod
    def _reject_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rate_limit" in data:
            raise ValueError(
                "rate_limit is not supported by feldera-exporter; remove it (the server caps connections and "
                "request time itself, see docs/security.md)"
            )
        return data

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name not in _ALLOWED_HEADERS:
                raise ValueError(f"header {name!r} can not be configured; allowed: {', '.join(_ALLOWED_HEADERS)}")
            allowed = _ALLOWED_HEADERS[name]
            if allowed and text not in allowed:
                raise ValueError(f"invalid value for {name}: expected one of {', '.join(allowed)}, got {text!r}")
            if not text.isprintable():
                raise ValueError(f"header {name!r} must not contain line breaks or control characters")
        return value


class WebConfig(_Strict):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("basic_auth_users")
    @classmethod
    def _check_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if not user or ":" in user:
                raise ValueError(f"user name {user!r} must be non-empty and must not contain ':'")
            if not (hashed.startswith(_BCRYPT_PREFIXES) and len(hashed) == 60):
                # The value itself is never echoed: a plain-text password pasted by mistake must not reach logs.
                raise ValueError(f"password of user {user!r} is not a bcrypt hash ($2a$/$2b$/$2y$, 60 characters)")
        if value:
            _require_bcrypt()
        return value

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side context for :class:`~exporter.webserver.WebServer`, or None when TLS is off."""
        tls = self.tls_server_config
        if tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _TLS_VERSIONS[tls.min_version]
        context.maximum_version = _TLS_VERSIONS[tls.max_version]
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"tls_server_config.cert_file/key_file: cannot load {tls.cert_file} / {tls.key_file}: {_reason(exc)}"
            ) from None
        if tls.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=tls.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(
                    f"tls_server_config.client_ca_file: cannot load {tls.client_ca_file}: {_reason(exc)}"
                ) from None
            context.verify_mode = (
                ssl.CERT_REQUIRED if tls.client_auth_type == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
            )
        return context

    def files(self) -> tuple[Path, ...]:
        """The certificate files this configuration reads (watched for changes)."""
        tls = self.tls_server_config
        if tls is None:
            return ()
        return tuple(path for path in (tls.cert_file, tls.key_file, tls.client_ca_file) if path is not None)


Stamp = tuple[int, int, int, int] | None
"""(mtime, ctime, size, inode) of a file; None while stat() fails on it (missing): its appearance is a change."""
Stamps = Mapping[Path, Stamp]
"""A stamp per watched file, each taken before the file was read: a change made while it was read is seen next."""


@dataclass(frozen=True, slots=True)
class _InForce:
    """What requests and new connections use; replaced as a whole when a reload succeeds."""

    config: WebConfig
    ssl: ssl.SSLContext | None
    auth: BasicAuth | None
    stamps: Stamps


@dataclass(frozen=True, slots=True)
class _Refused:
    """A changed set of files that could not be loaded: logged once, tried again when one of them changes again.

    The stamps cover the files of the configuration in force and the files the refused web config names (when it
    parsed): a certificate that was missing is one of them, so its arrival is a change."""

    stamps: Stamps
    reason: str


class WebSecurity:
    """The web config in force: TLS context for new connections and an aiohttp middleware for basic auth and
    headers, both re-read when the web-config file or a certificate file changes.

    Raises :class:`WebConfigError` at construction when the file is unusable; later reload failures are logged
    and the configuration in force stays. Checking for changes (``stat()``, reading, building the TLS context)
    is file I/O, which on a slow or hung mount could stall the event loop: :meth:`running` (an aiohttp cleanup
    context) checks every ``check_every`` seconds in a thread of its own, and requests only read what is in force.
    """

    def __init__(self, path: Path | str, *, check_every: float = RELOAD_CHECK_SECONDS) -> None:
        self._path = Path(path)
        self._check_every = check_every
        stamps: dict[Path, Stamp] = {}
        config, context = self._load(stamps)
        self._executor = ThreadPoolExecutor(
            max_workers=BCRYPT_THREADS, thread_name_prefix="bcrypt", initializer=_yield_the_cpu
        )
        self._in_force = _InForce(config, context, self._basic_auth(config), stamps)
        self._refused: _Refused | None = None

    @property
    def tls(self) -> bool:
        return self._in_force.config.tls_server_config is not None

    def ssl_context(self) -> ssl.SSLContext:
        """The context for a new TLS connection (after a rotation: the new certificate)."""
        context = self._in_force.ssl
        if context is None:
            raise RuntimeError("TLS is not configured")
        return context

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        in_force = self._in_force
        response: web.StreamResponse | None = None
        if in_force.auth is not None:
            header, address = request.headers.get("Authorization"), request.remote or ""
            try:
                allowed = await in_force.auth.allows(header, address, lambda: slot_set_aside(request))
            except AuthBusy as busy:  # not checked at all: no slot held meanwhile, none kept afterwards
                response = web.Response(status=busy.status, text=f"{busy}\n", headers={"Retry-After": "1"})
                response.force_close()
            else:
                if not allowed:  # the connection is closed: a client that keeps failing holds no slot
                    response = web.Response(
                        status=401,
                        text="Unauthorized\n",
                        headers={"WWW-Authenticate": 'Basic realm="feldera-exporter", charset="UTF-8"'},
                    )
                    response.force_close()
        if response is None:
            response = await handler(request)
        response.headers.update(in_force.config.http_server_config.headers)
        return response

    async def running(self, _app: object = None) -> AsyncIterator[None]:
        """Check for changes in the background while the application runs (``app.cleanup_ctx``)."""
        watching = asyncio.create_task(self._watch(), name=f"web-config-check {self._path}")
        try:
            yield
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching  # does not wait for a check stuck in the kernel: its thread is left behind
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def check(self) -> None:
        """Reload now if a file changed since the last check; the new configuration applies from the next request
        and the next connection."""
        in_force, refused = self._in_force, self._refused
        outcome = await in_own_thread(lambda: self._reloaded(in_force, refused), name="web-config-check")
        if isinstance(outcome, _Refused):
            # remembered as refused: neither tried nor logged again until a file changes again (a rotation
            # still being written: when its next file lands)
            self._refused = outcome
            log.error("web config %s not reloaded, keeping the one in force: %s", self._path, outcome.reason)
        elif outcome is not None:
            self._in_force, self._refused = outcome, None
            log.info("web config %s reloaded (TLS certificates and basic auth users)", self._path)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            try:
                await self.check()
            except Exception as exc:  # e.g. no thread could be started: the next check tries again
                log.error(
                    "web config %s: checking for changes failed: %s: %s", self._path, type(exc).__name__, clean(exc)
                )

    def _reloaded(self, in_force: _InForce, refused: _Refused | None) -> _InForce | _Refused | None:
        """In a worker thread: the new configuration, why the changed files cannot be used, or None (no change)."""
        watched = in_force.stamps.keys() | (refused.stamps.keys() if refused is not None else set())
        stamps = {path: _stamp(path) for path in watched}
        if stamps == (in_force.stamps if refused is None else refused.stamps):
            return None
        try:
            config, context = self._load(stamps, tls=in_force.config.tls_server_config is not None)
        except WebConfigError as exc:
            return _Refused(stamps, str(exc))
        except Exception as exc:  # e.g. RecursionError from YAML nested too deeply: the config in force stays
            return _Refused(stamps, clean(f"{type(exc).__name__}: {exc}"))
        same_users = config.basic_auth_users == in_force.config.basic_auth_users
        auth = in_force.auth if same_users else self._basic_auth(config)
        return _InForce(config, context, auth, {path: stamps[path] for path in (self._path, *config.files())})

    def _load(self, stamps: dict[Path, Stamp], *, tls: bool | None = None) -> tuple[WebConfig, ssl.SSLContext | None]:
        """Load the web config and its certificates, stamping each file into ``stamps`` just before reading it (so
        also when loading fails); ``tls``: whether TLS is on now (switching it needs a restart)."""
        stamps[self._path] = _stamp(self._path)
        config = load_web_config(self._path)
        if tls is not None and (config.tls_server_config is not None) != tls:
            raise WebConfigError("tls_server_config: switching TLS on or off needs a restart")
        stamps.update({path: _stamp(path) for path in config.files()})
        return config, config.ssl_context()

    def _basic_auth(self, config: WebConfig) -> BasicAuth | None:
        return BasicAuth(config.basic_auth_users, self._executor) if config.basic_auth_users else None


def _stamp(path: Path) -> Stamp:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)


class AuthBusy(Exception):
    """Too many checks are waiting for bcrypt (``status`` 503), or too many from the request's address (429): the
    request is answered at once, unchecked."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, remembering recent successes.

    A check that needs bcrypt waits in its pool with its connection's slot set aside (``aside``); at most
    ``max_waiting`` checks wait at once, ``max_waiting_per_address`` from one address: beyond, :class:`AuthBusy`."""

    def __init__(
        self,
        users: dict[str, str],
        executor: ThreadPoolExecutor,
        *,
        max_waiting: int = MAX_AUTH_WAITING,
        max_waiting_per_address: int = MAX_AUTH_WAITING_PER_ADDRESS,
    ) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        # Unknown users are checked against a real hash (same cost) so that timing does not reveal user names.
        self._decoy = next(iter(self._users.values()))
        self._executor = executor
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._max_waiting = max_waiting
        self._max_waiting_per_address = max_waiting_per_address
        self._waiting: dict[str, int] = {}
        self._waiting_total = 0

    def __repr__(self) -> str:
        return f"BasicAuth(users={sorted(self._users)})"

    async def allows(
        self,
        header: str | None,
        address: str = "",
        aside: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> bool:
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed or b""))).digest()
        if hashed is not None and any(hmac.compare_digest(key, known) for known in self._good):
            self._good.move_to_end(key)
            return True
        if self._waiting.get(address, 0) >= self._max_waiting_per_address:
            raise AuthBusy(429, f"too many password checks waiting from {address} ({self._max_waiting_per_address})")
        if self._waiting_total >= self._max_waiting:
            raise AuthBusy(503, f"too many password checks waiting ({self._max_waiting}); try again")
        self._waiting_total += 1
        self._waiting[address] = self._waiting.get(address, 0) + 1
        try:
            with aside():
                loop = asyncio.get_running_loop()
                ok = await loop.run_in_executor(self._executor, _bcrypt_check, password.encode(), hashed or self._decoy)
        finally:
            self._waiting_total -= 1
            if self._waiting[address] == 1:
                del self._waiting[address]
            else:
                self._waiting[address] -= 1
        if not ok or hashed is None:
            return False
        self._good[key] = None
        while len(self._good) > _AUTH_CACHE_SIZE:
            self._good.popitem(last=False)
        return True


def _parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, token = header.strip(" \t").partition(" ")  # RFC 9110 whitespace is SP and HTAB only
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(" \t"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _yield_the_cpu() -> None:
    """Run this (bcrypt) thread at the lowest CPU priority, where the OS allows one per thread (Linux: ``nice`` of
    the thread's ID): a flood of wrong passwords keeps both bcrypt threads busy, and at the same priority they took
    the event loop's CPU on a two-core machine (scrapes waited up to a second under 300 such clients)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICE)


def _bcrypt_check(password: bytes, hashed: bytes) -> bool:
    bcrypt = _require_bcrypt()
    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:
        return False


def _require_bcrypt() -> Any:
    try:
        import bcrypt
    except ImportError:
        raise ValueError("basic_auth_users needs the bcrypt package (the web extra): pip install bcrypt") from None
    return bcrypt


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def parse_web_config(data: object, base_dir: Path) -> WebConfig:
    """Validate an already-parsed document; relative file paths are resolved against ``base_dir``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WebConfigError("(top level): expected a mapping")
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as exc:
        raise WebConfigError("\n".join(str(problem) for problem in validation.problems(exc))) from None
    tls = config.tls_server_config
    if tls is None:
        return config
    resolved = {
        name: base_dir / path
        for name in ("cert_file", "key_file", "client_ca_file")
        if (path := getattr(tls, name)) is not None
    }
    return config.model_copy(update={"tls_server_config": tls.model_copy(update=resolved)})


def load_web_config(path: Path | str) -> WebConfig:
    """Read and validate a web-config file; certificates are loaded (and checked) by :meth:`WebConfig.ssl_context`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot read: {_reason(exc)}") from None
    except UnicodeDecodeError:
        raise WebConfigError(f"{path}: cannot read: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(yamlerror.describe(path, exc)) from None
    return parse_web_config(data, path.parent)
