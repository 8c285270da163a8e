"""HTTP serving for the exporter and the simulator: an ``aiohttp.web`` application behind a bounded accept loop.

aiohttp parses requests and writes responses; this module adds only what aiohttp has no setting for (see
``docs/security.md`` for every limit and its value):

* a cap on open connections that a scraper always gets through: connections are accepted as they come (up to
  ``backlog`` of them waiting here, more in the kernel's listen backlog) and let in one address after the other
  (round robin), so one crowded address does not queue the others behind it; at the cap one connection without a
  request in progress is closed to make room: first the one kept alive the longest since its last answer, else
  (past a short grace) the one waiting the longest for its first request (sending its head slowly, or in its TLS
  handshake); only while none may be closed does a new connection wait;
* a share per remote address: one address holding its share gets its own longest-idle connection closed for a new
  one, or the new one closed at once while all of its share is busy;
* a request waiting for something slow that is not the connection's doing (bcrypt) can set its slot aside
  (:func:`slot_set_aside`): it then counts neither against the cap nor against its address's share;
* a TLS handshake deadline (asyncio's ``ssl_handshake_timeout``), and a plain-HTTP request sent to the TLS port
  answered ``400`` (the first byte is peeked before the handshake, as Go's TLS server does);
* a request deadline covering the handler *and* writing the response, so a client that never reads cannot hold a
  connection (and its buffered response) for ever; past it the connection is aborted;
* HTTP versions other than 1.0 and 1.1 refused with ``505``.

aiohttp itself enforces the header limits (``max_line_size``, ``max_field_size``, ``max_headers``), answers ``400``
to a request with both ``Content-Length`` and ``Transfer-Encoding`` and closes the connection, and its
``keepalive_timeout`` (armed at accept and after each response) closes a connection that has not delivered a
complete request head in time, however slowly its bytes trickle in: that is the header-read deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11

from exporter.logsafe import clean

log = logging.getLogger(__name__)

# aiohttp logs every malformed request with a traceback at ERROR. Answering 400 is the whole story, and a client
# must not be able to fill the log; handler failures are logged by the guard below, not here.
_protocol_log = logging.getLogger("exporter.webserver.protocol")
_protocol_log.setLevel(logging.CRITICAL)

_HTTP_TO_TLS_PORT = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)
_TLS_HANDSHAKE_RECORD = 0x16
_VERSIONS = (HttpVersion10, HttpVersion11)
_ACCEPT_ERROR_PAUSE = 0.1
SETUP_FAILURE_LOG_INTERVAL = 60.0
"""Seconds between log lines about connections whose set-up failed unexpectedly (e.g. no TLS context)."""

EVERY_PATH = r"/{path:[\s\S]*}"
"""A route matching every path, control characters included (``.*`` stops at a decoded newline: aiohttp's 404)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SSLContextSource = Callable[[], ssl.SSLContext]
"""Called for every new connection, so that a rotated certificate is used without a restart."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every server limit in one place; the defaults are what ``feldera-exporter`` serves with."""

    header_timeout: float = 5.0
    """Seconds a connection has to deliver a complete request head, from accept or from the end of the previous
    response; it is also the idle keep-alive expiry (aiohttp's ``keepalive_timeout``)."""
    request_timeout: float | None = 30.0
    """Seconds for the handler plus writing the whole response (the write deadline); ``None``: no deadline."""
    max_connections: int = 128
    """Open connections (TLS handshakes included). At the cap a new connection closes one without a request in
    progress (the one kept alive the longest, else a new one past its grace); it waits only while none may be
    closed."""
    max_connections_per_address: int = 32
    """Open (and waiting) connections of one remote address; past it, one of its own is closed for the new one as
    above, or the new one is closed at once."""
    new_connection_grace: float = 0.25
    """Seconds a new connection that has had no answer yet is safe from being closed to make room: a client's
    request arrives within milliseconds of connecting, so under a storm of new connections a scraper's is not
    closed before its request is read (a kept-alive connection may be closed as soon as its answer is sent)."""
    tls_handshake_timeout: float = 5.0
    max_line_size: int = 8190
    """Bytes in the request line or one header line; longer: 400."""
    max_field_size: int = 8190
    """Bytes in one header value; longer: 400."""
    max_headers: int = 64
    """Header lines per request; more: 400."""
    max_body_bytes: int = 64 * 1024
    """Request body; larger: 413."""
    shutdown_timeout: float = 2.0
    """On close, seconds a request in progress may still take before it is cancelled and its connection aborted."""
    backlog: int = 128
    """Connections accepted and waiting to be let in (round robin by address); as many more wait in the kernel's
    listen backlog."""


@dataclass(frozen=True, slots=True)
class Listening:
    """Where a server listens, as its socket says (not as it was asked: ``localhost`` is bound as ``127.0.0.1``)."""

    host: str
    """The bound address: ``0.0.0.0`` or ``::`` for all interfaces."""
    port: int
    ipv4_too: bool
    """An IPv6 socket that accepts IPv4 as well (dual stack: the empty host)."""

    @classmethod
    def of(cls, sock: socket.socket) -> Listening:
        host, port = sock.getsockname()[:2]
        dual = sock.family == socket.AF_INET6 and not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        return cls(host, port, dual)

    @property
    def all_interfaces(self) -> bool:
        return ipaddress.ip_address(self.host).is_unspecified

    def url(self, scheme: str = "http") -> str:
        """A URL a client on this machine can connect to: the loopback address when listening on all interfaces."""
        host = self.host
        if self.all_interfaces:
            host = "127.0.0.1" if self.ipv4_too or ":" not in host else "::1"
        return f"{scheme}://{_bracketed(host)}:{self.port}"

    def describe(self, scheme: str = "http") -> str:
        """For a log line: the URL, or which interfaces and a local URL (``0.0.0.0`` is no address to connect to)."""
        if not self.all_interfaces:
            return self.url(scheme)
        versions = "IPv6 and IPv4" if self.ipv4_too else ("IPv6 only" if ":" in self.host else "IPv4")
        return f"all interfaces ({_bracketed(self.host)}:{self.port}, {versions}), locally {self.url(scheme)}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Slot:
    """One accepted connection's place under the caps, from ``accept()`` until it closes.

    It counts against the cap and its address's share while ``held``; it can be closed to make room while it has
    no request in progress (``busy`` 0), then it is in its server's idle order (the longest idle first)."""

    __slots__ = ("address", "answered", "aside", "busy", "held", "idle_since", "server", "task", "transport")

    def __init__(self, server: WebServer, address: str) -> None:
        self.server = server
        self.address = address
        self.held = True
        self.aside = False
        self.busy = 0
        self.answered = False
        """Whether a request of it has ended: it is kept alive between requests, not new."""
        self.idle_since = 0.0
        """The event loop's time when its last request ended (or it was accepted)."""
        self.task: asyncio.Task[None] | None = None
        """Setting the connection up (TLS first-byte peek and handshake): cancelled to close it before then."""
        self.transport: asyncio.BaseTransport | None = None

    def close(self) -> None:
        """Close now, giving the slot back at once (the connection's end gives back nothing more). A connection with
        nothing left to send is closed gracefully (FIN; TLS close_notify): a client that was about to reuse it sees
        it closed and retries on a new one (Go's and aiohttp's clients do for idempotent requests); one with unsent
        output (its reader stopped reading) is aborted, as is one still being set up."""
        self.server._release(self)
        transport = self.transport
        if isinstance(transport, asyncio.Transport):
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()
        elif self.task is not None:
            self.task.cancel()


class _Connection(asyncio.Protocol):
    """aiohttp's request handler for one connection, with its :class:`_Slot`: registered while connected, the slot
    given back (once) when the connection ends or never starts."""

    def __init__(self, inner: asyncio.Protocol, slot: _Slot) -> None:
        self._inner = inner
        self.slot = slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.slot.transport = transport
        self.slot.server._connected(self.slot)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self.slot.server._disconnected(self.slot)


_SLOT = web.RequestKey("exporter.webserver.slot", _Slot)
"""The key of a request's :class:`_Slot` in the request (set by the server's guard middleware)."""


@contextlib.contextmanager
def slot_set_aside(request: web.Request) -> Iterator[None]:
    """While inside, the request's connection counts neither against the cap nor against its address's share, and
    cannot be closed to make room: for a wait that is not the connection's doing (bcrypt's queue). Afterwards it
    counts again, even past the cap (the accept loop then waits for room); whoever sets slots aside bounds how many
    may be aside at once."""
    slot = request.get(_SLOT)
    if slot is None or not slot.held:
        yield
        return
    slot.server._set_aside(slot)
    try:
        yield
    finally:
        slot.server._take_back(slot)


class WebServer:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one; read :attr:`port` after :meth:`start`)."""

    def __init__(
        self,
        app: web.Application,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: SSLContextSource | None = None,
        limits: ServerLimits | None = None,
        server_header: str = "feldera-exporter",
    ) -> None:
        self._limits = limits or ServerLimits()
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._server_header = server_header
        app.middlewares.insert(0, self._guard)
        app.on_response_prepare.append(self._stamp)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self._limits.shutdown_timeout,
            keepalive_timeout=self._limits.header_timeout,
            lingering_time=self._limits.header_timeout,  # reading and discarding a body the handler did not read
            max_line_size=self._limits.max_line_size,
            max_field_size=self._limits.max_field_size,
            max_headers=self._limits.max_headers,
            logger=_protocol_log,
        )
        self._socket: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self._open: set[_Slot] = set()
        """Slots whose connection is made (has a transport), until it is lost."""
        self._by_transport: dict[asyncio.BaseTransport, _Slot] = {}
        self._held = 0
        self._per_address: dict[str, int] = {}
        self._new: dict[_Slot, None] = {}
        """Held slots without an answer yet and no request in progress, the oldest first (insertion order)."""
        self._kept: dict[_Slot, None] = {}
        """Held slots kept alive between requests, the longest idle first (insertion order)."""
        self._room = asyncio.Event()
        """Set when a slot is given back or becomes idle: what the admission waits for at the cap."""
        self._waiting: dict[str, collections.deque[socket.socket]] = {}
        """Accepted sockets not let in yet, by remote address; an address goes to the end once one of its is let in."""
        self._waiting_count = 0
        self._arrived = asyncio.Event()
        """Set when a socket is added to :attr:`_waiting` (the admission waits for it)."""
        self._taken = asyncio.Event()
        """Set when one is let in (accepting waits for it while ``backlog`` sockets wait)."""
        self._admitting: asyncio.Task[None] | None = None
        self._setup_failures = 0
        self._setup_reported: float | None = None
        self._setup_last = ""
        self._setup_flush: asyncio.TimerHandle | None = None

    @property
    def port(self) -> int:
        return self.listening.port

    @property
    def listening(self) -> Listening:
        if self._socket is None:
            raise RuntimeError("server not started")
        return Listening.of(self._socket)

    @property
    def open_connections(self) -> int:
        """Accepted connections not yet closed (in their TLS handshake or open) and counting against the cap."""
        return self._held

    async def start(self) -> None:
        await self._runner.setup()
        try:
            self._socket = _listen(self._host, self._port, self._limits.backlog)
        except BaseException:  # e.g. the port is taken: undo the application's start-up (its background tasks)
            await self._runner.cleanup()
            raise
        self._accepting = asyncio.create_task(self._accept_loop(), name=f"accept-{self.port}")
        self._admitting = asyncio.create_task(self._admit_loop(), name=f"admit-{self.port}")

    async def close(self) -> None:
        """Stop accepting; requests in progress get ``shutdown_timeout`` to finish, then every connection goes."""
        if self._accepting is None:
            return
        if self._setup_flush is not None:
            self._setup_flush.cancel()
            self._flush_setup_failures()  # held back until now: reported before the server goes
        for task in (self._accepting, self._admitting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._accepting = self._admitting = None
        if self._socket is not None:
            self._socket.close()
        for queue in self._waiting.values():
            for sock in queue:
                sock.close()
        self._waiting.clear()
        for task in list(self._connecting):
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        # aiohttp waits shutdown_timeout for requests in progress, then again for their cancellation; a request
        # stuck writing to a peer that does not read only ends with its connection, so abort what is left in time
        aborting = asyncio.get_running_loop().call_later(self._limits.shutdown_timeout, self._abort_all)
        try:
            await self._runner.cleanup()
        finally:
            aborting.cancel()
            self._abort_all()

    def _abort_all(self) -> None:
        for slot in list(self._open):
            if isinstance(slot.transport, asyncio.Transport):  # what a TCP (or TLS) connection has
                slot.transport.abort()

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- connections ----------------------------------------------------------------------------------------

    async def _accept_loop(self) -> None:
        """Take connections from the kernel as they come, into :attr:`_waiting` (up to ``backlog`` of them)."""
        loop = asyncio.get_running_loop()
        assert self._socket is not None
        while True:
            if self._waiting_count >= self._limits.backlog:
                self._taken.clear()
                await self._taken.wait()
                continue
            try:
                sock, peer = await loop.sock_accept(self._socket)
            except OSError as exc:  # e.g. EMFILE: wait a little instead of spinning (and logging) per attempt
                log.warning("accept() failed: %s", exc.strerror or exc)
                await asyncio.sleep(_ACCEPT_ERROR_PAUSE)
                continue
            address = str(peer[0]) if isinstance(peer, tuple) else ""
            if not self._share_left(address):
                sock.close()  # no connection of its share may be closed for this one: it cannot wait either
                continue
            self._waiting.setdefault(address, collections.deque()).append(sock)
            self._waiting_count += 1
            self._arrived.set()

    async def _admit_loop(self) -> None:
        """Let waiting connections in as slots free, one address after the other."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._room_made()
            address = next(iter(self._waiting))
            queue = self._waiting.pop(address)
            sock = queue.popleft()
            if queue:
                self._waiting[address] = queue  # behind every other address waiting
            self._waiting_count -= 1
            self._taken.set()
            slot = _Slot(self, address)
            slot.idle_since = loop.time()
            self._held += 1
            self._per_address[address] = self._per_address.get(address, 0) + 1
            self._new[slot] = None
            slot.task = asyncio.create_task(self._connect(sock, slot))
            self._connecting.add(slot.task)
            slot.task.add_done_callback(self._connecting.discard)

    def _share_left(self, address: str) -> bool:
        """Whether ``address`` may open one more connection (its open ones and those waiting to be let in), after
        closing one of its own if it must."""
        waiting = len(self._waiting.get(address, ()))
        if self._per_address.get(address, 0) + waiting < self._limits.max_connections_per_address:
            return True
        kept = (slot for slot in self._kept if slot.address == address)
        new = (slot for slot in self._new if slot.address == address)
        victim = next(kept, None) or next(new, None)
        if victim is None or not self._closable(victim):
            return False
        victim.close()
        return True

    async def _room_made(self) -> None:
        """Return once a slot is free: at the cap, by closing the connection kept alive the longest, else the new
        one waiting the longest for its first request once past its grace, else by waiting for either."""
        while self._held >= self._limits.max_connections:
            victim = next(iter(self._kept), None) or next(iter(self._new), None)
            if victim is not None and self._closable(victim):
                victim.close()
                return
            self._room.clear()
            wait = None if victim is None else self._limits.new_connection_grace - self._idle_for(victim)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._room.wait()

    def _closable(self, slot: _Slot) -> bool:
        return slot.answered or self._idle_for(slot) >= self._limits.new_connection_grace

    @staticmethod
    def _idle_for(slot: _Slot) -> float:
        return asyncio.get_running_loop().time() - slot.idle_since

    def _not_idle(self, slot: _Slot) -> None:
        self._new.pop(slot, None)
        self._kept.pop(slot, None)

    def _release(self, slot: _Slot) -> None:
        """Give the slot's place back (once): no longer counted, nor closable to make room."""
        self._not_idle(slot)
        if slot.held:
            slot.held = False
            if not slot.aside:
                self._uncount(slot.address)
            self._room.set()

    def _uncount(self, address: str) -> None:
        self._held -= 1
        left = self._per_address[address] - 1
        if left:
            self._per_address[address] = left
        else:
            del self._per_address[address]

    def _connected(self, slot: _Slot) -> None:
        assert slot.transport is not None
        self._open.add(slot)
        self._by_transport[slot.transport] = slot

    def _disconnected(self, slot: _Slot) -> None:
        self._open.discard(slot)
        if slot.transport is not None:
            self._by_transport.pop(slot.transport, None)
        self._release(slot)

    def _set_aside(self, slot: _Slot) -> None:
        self._not_idle(slot)
        slot.aside = True
        self._uncount(slot.address)
        self._room.set()

    def _take_back(self, slot: _Slot) -> None:
        slot.aside = False
        if slot.held:  # still connected: counted again, and closable once its request is done
            self._held += 1
            self._per_address[slot.address] = self._per_address.get(slot.address, 0) + 1

    async def _connect(self, sock: socket.socket, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = self._runner.server
            assert server is not None
            connection = _Connection(server(), slot)
            context = self._ssl_context() if self._ssl_context is not None else None
            if context is None:
                await loop.connect_accepted_socket(lambda: connection, sock)
            else:
                deadline = loop.time() + self._limits.tls_handshake_timeout
                async with asyncio.timeout(self._limits.tls_handshake_timeout):
                    if not await _starts_tls(sock):
                        return
                await loop.connect_accepted_socket(
                    lambda: connection,
                    sock,
                    ssl=context,
                    ssl_handshake_timeout=max(deadline - loop.time(), 0.001),
                    ssl_shutdown_timeout=self._limits.tls_handshake_timeout,
                )
        except (OSError, ssl.SSLError, TimeoutError):
            return
        except Exception as exc:  # e.g. no TLS context to be had, or a bug: this connection goes, the server stays
            self._report_setup_failure(exc)
        finally:
            slot.task = None
            if slot.transport is None:  # never connected (or closed to make room meanwhile: cancelled)
                sock.close()
                self._release(slot)

    def _report_setup_failure(self, exc: Exception) -> None:
        """Log at most one line per ``SETUP_FAILURE_LOG_INTERVAL``: a client must not be able to fill the log. The
        failures held back are reported when the interval ends, so none goes unreported."""
        what = f"{type(exc).__name__}: {clean(exc)}"
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._setup_reported is not None and now - self._setup_reported < SETUP_FAILURE_LOG_INTERVAL:
            self._setup_failures, self._setup_last = self._setup_failures + 1, what
            if self._setup_flush is None:
                wait = self._setup_reported + SETUP_FAILURE_LOG_INTERVAL - now
                self._setup_flush = loop.call_later(wait, self._flush_setup_failures)
            return
        if self._setup_flush is not None:  # its interval has ended but its timer has not run yet: report them first
            self._setup_flush.cancel()
            self._flush_setup_failures()
        log.error("setting up a new connection failed, closed it: %s", what, exc_info=exc)
        self._setup_reported = now

    def _flush_setup_failures(self) -> None:
        self._setup_flush = None
        log.error(
            "setting up a new connection failed %d more time(s) in the last %.0f s, closed them; the last: %s",
            self._setup_failures,
            SETUP_FAILURE_LOG_INTERVAL,
            self._setup_last,
        )
        self._setup_reported, self._setup_failures = asyncio.get_running_loop().time(), 0

    # ---- per request ----------------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.version not in _VERSIONS:
            return web.Response(status=505, text="HTTP version not supported: use HTTP/1.1\n", headers=_CLOSE)
        slot = self._by_transport.get(request.transport) if request.transport is not None else None
        if slot is None:
            return await self._guarded(request, handler)
        request[_SLOT] = slot
        slot.busy += 1
        self._not_idle(slot)
        try:
            return await self._guarded(request, handler)
        finally:
            slot.busy -= 1
            if slot.busy == 0 and slot.held and not slot.aside:
                slot.answered = True
                slot.idle_since = asyncio.get_running_loop().time()
                self._kept[slot] = None  # the end of the order: the most recently active
                self._room.set()

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(self._limits.request_timeout):
                try:
                    response = await handler(request)
                except web.HTTPException:
                    raise
                except Exception:
                    log.exception("handler failed for %s %s", request.method, request.rel_url.raw_path)
                    response = web.Response(status=500, text="internal server error\n")
                await response.prepare(request)
                await response.write_eof()
        except TimeoutError:
            # The client does not read (or send) fast enough: drop the connection and what is buffered for it.
            log.debug("request deadline passed for %s %s", request.method, request.rel_url.raw_path)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=408)  # cannot be written any more: aiohttp sees a closed connection
        return response

    async def _stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = self._server_header


_CLOSE = {"Connection": "close"}


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening, non-blocking socket: all interfaces (IPv6 and IPv4 where possible) for an empty host; for a name
    that resolves to several addresses, its first IPv4 one (else its first)."""
    if not host:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=backlog)
        else:
            sock = socket.create_server(("", port), backlog=backlog)
    else:  # one address of the name, IPv4 first, as Go's net.Listen picks one ("localhost" is 127.0.0.1 everywhere)
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = next((info for info in found if info[0] == socket.AF_INET), found[0])
        sock = socket.create_server(address[:2], family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


async def _starts_tls(sock: socket.socket) -> bool:
    """Wait for the first byte and peek at it: a TLS handshake record, or something else.

    Something else that looks like an HTTP request gets the 400 Go's TLS server sends; the caller then closes.
    """
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def ready() -> None:
        loop.remove_reader(sock.fileno())
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await readable
        first = sock.recv(1, socket.MSG_PEEK)
    finally:
        loop.remove_reader(sock.fileno())
    if first and first[0] == _TLS_HANDSHAKE_RECORD:
        return True
    if first[:1].isalpha():
        with contextlib.suppress(OSError):
            sock.recv(1 << 16)  # the request head: closing with it unread would reset the connection before the 400
            sock.send(_HTTP_TO_TLS_PORT)
            sock.shutdown(socket.SHUT_WR)
    return False
