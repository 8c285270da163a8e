"""The aiohttp.web server with its limits (exporter.webserver), over real loopback sockets, attacks included.

Every attack is bounded in count and time; limits are shortened where waiting for the default would only slow the
suite down, and the slowloris test uses the defaults to show they close a trickling client within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from exporter.webserver import EVERY_PATH, ServerLimits, WebServer, slot_set_aside
from tests.conftest import eventually


async def _echo(request: web.Request) -> web.Response:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    if request.path == "/big":
        return web.Response(body=b"x" * (8 << 20))
    body = await request.read()
    text = f"{request.method} {request.path} {sorted(request.query.items())} {len(body)}"
    return web.Response(text=text, headers={"X-Test": "1"})


def _app() -> web.Application:
    app = web.Application(client_max_size=1024)
    app.router.add_route("*", EVERY_PATH, _echo)
    return app


@contextlib.asynccontextmanager
async def serving(limits: ServerLimits | None = None, **kwargs: object) -> AsyncIterator[WebServer]:
    async with WebServer(_app(), limits=limits, **kwargs) as server:  # type: ignore[arg-type]
        yield server


async def _raw(port: int, payload: bytes, *, deadline: float = 10.0) -> bytes:
    """Send ``payload`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    async with asyncio.timeout(deadline):
        data = await reader.read()
    writer.close()
    return data


def _ssl_objects() -> int:
    """TLS connection state objects alive in this process (asyncio's, and the ``SSLObject`` each wraps: OpenSSL's
    per-connection memory, invisible to ``tracemalloc``, lives as long as they do)."""
    return sum(isinstance(o, ssl.SSLObject | asyncio.sslproto.SSLProtocol) for o in gc.get_objects())


async def _no_connections_left(server: WebServer) -> None:
    await eventually(lambda: server.open_connections == 0, "every connection closed", deadline=10)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        while await reader.read(1 << 16):
            pass
    except ConnectionError:
        pass
    return True


# ---- ordinary HTTP ------------------------------------------------------------------------------------------


async def test_request_path_and_query_are_decoded() -> None:
    async with serving() as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        response = await client.get("/v0/pipelines/%22Quoted%20Name%22", params={"token": "a b", "x": ""})
    assert response.status_code == 200
    assert response.text == "GET /v0/pipelines/\"Quoted Name\" [('token', 'a b'), ('x', '')] 0"
    assert response.headers["x-test"] == "1"
    assert response.headers["server"] == "feldera-exporter"


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with serving() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for _ in range(3):
            writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert (await reader.readexactly(length)).startswith(b"GET /a")
        writer.close()


async def test_head_gets_headers_and_length_but_no_body() -> None:
    async with serving() as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        response = await client.head("/abc")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(b"HEAD /abc [] 0")
    assert response.content == b""


async def test_handler_exception_becomes_500_logged_once_and_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving() as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        failed = await client.get("/boom")
        after = await client.get("/fine")
    assert (failed.status_code, failed.text) == (500, "internal server error\n")
    assert "handler bug" not in failed.text
    assert after.status_code == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == ["handler failed for GET /boom"]


async def test_garbage_request_gets_400_and_connection_closed_without_logging_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving() as server:
        data = await _raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert data.startswith(b"HTTP/1.0 400 Bad Request") or data.startswith(b"HTTP/1.1 400 Bad Request")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_oversized_body_is_refused_with_413() -> None:
    async with serving() as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        response = await client.post("/upload", content=b"x" * 4096)
        small = await client.post("/upload", content=b"x" * 10)
    assert response.status_code == 413
    assert small.text.endswith(" 10")


async def test_expect_100_continue_gets_100_then_the_answer() -> None:
    async with serving() as server:
        data = await _raw(
            server.port,
            b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert data.endswith(b"POST /e [] 3")


async def test_client_disconnect_mid_request_does_not_disturb_server() -> None:
    async with serving() as server:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()
        writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/next")).status_code == 200


async def test_close_ends_idle_connections_without_logging_errors_and_frees_the_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = WebServer(_app())
    await server.start()
    port = server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    with caplog.at_level(logging.ERROR):
        await server.close()
    async with asyncio.timeout(5):
        assert await _closed_by_server(reader)
    writer.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


# ---- protocol attacks ---------------------------------------------------------------------------------------


async def test_content_length_with_transfer_encoding_is_400_and_the_pipelined_request_is_not_served() -> None:
    smuggled = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    async with serving() as server:
        data = await _raw(server.port, smuggled)
    assert b" 400 Bad Request" in data.split(b"\r\n", 1)[0]
    assert data.count(b"HTTP/1.") == 1
    assert b"smuggled" not in data


@pytest.mark.parametrize(("version", "status"), [(b"HTTP/9.9", b" 400 "), (b"HTTP/2.0", b" 505 ")])
async def test_unsupported_http_versions_are_refused(version: bytes, status: bytes) -> None:
    async with serving() as server:
        data = await _raw(server.port, b"GET /a " + version + b"\r\nHost: x\r\n\r\n")
    assert status in data.split(b"\r\n", 1)[0]
    assert b"GET /a []" not in data  # the handler did not run


async def test_too_many_or_too_long_headers_are_400() -> None:
    limits = ServerLimits()
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(limits.max_headers + 1))
    long = b"X-Long: " + b"v" * (limits.max_field_size + 1) + b"\r\n"
    async with serving() as server:
        for headers in (many, long):
            data = await _raw(server.port, b"GET /a HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            assert b" 400 " in data.split(b"\r\n", 1)[0]
        ok = await _raw(server.port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")


@pytest.mark.slow
async def test_slowloris_clients_are_closed_within_the_header_deadline() -> None:
    """Defaults: 30 clients trickling a header byte every 0.5 s are all closed after ``header_timeout``, not kept
    alive by each byte; meanwhile an honest client is served."""
    limits = ServerLimits()
    async with serving() as server:
        clients = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(30)]
        for _, writer in clients:
            writer.write(b"GET /slow HTTP/1.1\r\n")

        async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            while not reader.at_eof():
                with contextlib.suppress(ConnectionError):
                    writer.write(b"X")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        if not await reader.read(1 << 16):
                            break
            return True

        async with asyncio.timeout(limits.header_timeout + 5):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                assert (await client.get("/honest")).status_code == 200
            assert all(await asyncio.gather(*(trickle(r, w) for r, w in clients)))
        for _, writer in clients:
            writer.close()
        await _no_connections_left(server)


async def test_a_client_that_never_reads_is_dropped_at_the_request_deadline() -> None:
    limits = ServerLimits(request_timeout=1.0)
    async with serving(limits) as server:
        stuck = []
        for _ in range(10):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            stuck.append((reader, writer))
        await _no_connections_left(server)
        for _, writer in stuck:
            writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/after")).status_code == 200


# ---- the connection cap and TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_plain_http_to_the_tls_port_is_answered_400(tls_context: ssl.SSLContext) -> None:
    async with serving(ssl_context=lambda: tls_context) as server:
        data = await _raw(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=_unverified())
        writer.write(b"GET /tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        served = await reader.read()
        writer.close()
    assert data.startswith(b"HTTP/1.0 400 Bad Request")
    assert data.endswith(b"Client sent an HTTP request to an HTTPS server.\n")
    assert served.startswith(b"HTTP/1.1 200 OK")


async def test_a_connection_whose_tls_context_cannot_be_had_is_closed_logged_once_and_frees_its_slot(
    tls_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """The context source is called per connection (rotation); when it raises something unexpected the connection
    goes and the server stays. Before, the task died with "Task exception was never retrieved", unlogged by us."""
    failures = 3

    def source() -> ssl.SSLContext:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("TLS is not configured\r\nforged line")
        return tls_context

    async with serving(ssl_context=source) as server:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            async with asyncio.timeout(10):
                assert await reader.read() == b""  # closed without an answer
            writer.close()
        await eventually(lambda: server.open_connections == 0, "every slot given back")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=_unverified())
        writer.write(b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        served = await reader.read()
        writer.close()
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    assert served.startswith(b"HTTP/1.1 200 OK")
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    reported, held_back = [r for r in caplog.records if "setting up a new connection failed" in r.getMessage()]
    assert reported.levelno == held_back.levelno == logging.ERROR  # not per connection
    assert "closed it: RuntimeError: TLS is not configured\\r\\nforged line" in reported.getMessage()
    # the two held back are reported when the server closes (else when the interval ends)
    assert "failed 2 more time(s) in the last 60 s, closed them; the last: RuntimeError" in held_back.getMessage()


@pytest.mark.slow
async def test_connection_setup_failures_held_back_are_reported_when_the_interval_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, failures after a report were only counted, and logged only if another came after the interval."""
    monkeypatch.setattr("exporter.webserver.SETUP_FAILURE_LOG_INTERVAL", 3.0)  # 4 connections fit in it

    def source() -> ssl.SSLContext:
        raise RuntimeError("no context")

    def reports() -> list[str]:
        return [r.getMessage() for r in caplog.records if "setting up a new connection failed" in r.getMessage()]

    async with serving(ssl_context=source) as server:
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            async with asyncio.timeout(10):
                assert await reader.read() == b""
            writer.close()
        await eventually(lambda: len(reports()) == 2, "the held-back failures reported")
        first, held_back = reports()
        assert first.endswith("closed it: RuntimeError: no context")
        assert "failed 3 more time(s)" in held_back


async def test_idle_tls_connections_are_capped_and_dropped_at_the_handshake_deadline(
    tls_context: ssl.SSLContext,
) -> None:
    """300 TCP connections that never start a handshake: at most ``max_connections`` are held (a newer one closes
    the one idle the longest, or waits in the backlog), each for at most ``tls_handshake_timeout``, and none costs an
    SSL object (the first byte is awaited before asyncio's TLS machinery is set up); then an honest client is
    served. Before, 2,000 such connections took RSS from 208 to 664 MB: an SSL object each."""
    limits = ServerLimits(max_connections=50, max_connections_per_address=50, tls_handshake_timeout=1.0, backlog=512)
    async with serving(limits, ssl_context=lambda: tls_context) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(300)]
        await eventually(lambda: server.open_connections == limits.max_connections, "the cap reached")
        ssl_objects = _ssl_objects()
        most = 0
        async with asyncio.timeout(30):
            while True:
                most = max(most, server.open_connections)
                done = [reader.at_eof() for reader, _ in idle]
                if all(done):
                    break
                await asyncio.gather(*(reader.read(1) for reader, _ in idle if not reader.at_eof()))
        for _, writer in idle:
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=_unverified())
        writer.write(b"GET /honest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
    assert 0 < most <= limits.max_connections
    assert ssl_objects == 0, f"{ssl_objects} SSL objects for idle connections that sent no byte"
    assert answer.startswith(b"HTTP/1.1 200 OK")


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _request(port: int, path: str = "/a", *, source: str = "127.0.0.1") -> Connection:
    """A kept-alive connection from ``source`` that has sent one request (its answer not read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def _answered(reader: asyncio.StreamReader) -> bytes:
    """The head of the next answer on a connection (its body is read too)."""
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        await reader.readexactly(length)
    return head


async def _idle(port: int, *, source: str = "127.0.0.1") -> Connection:
    """A kept-alive connection that has been answered once and is now idle."""
    reader, writer = await _request(port, source=source)
    assert (await _answered(reader)).startswith(b"HTTP/1.1 200")
    return reader, writer


async def _closed(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(10):
        return await reader.read() == b""


class Holding:
    """Requests to ``/hold`` wait (their slot set aside with ``aside``) until :attr:`release` is set."""

    def __init__(self, aside: bool = False) -> None:
        self.release = asyncio.Event()
        self.held = 0
        self.aside = aside

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/hold":
            self.held += 1
            with slot_set_aside(request) if self.aside else contextlib.nullcontext():
                await self.release.wait()
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", EVERY_PATH, self.handle)
        return app

    async def requests(self, port: int, count: int, *, source: str = "127.0.0.1") -> list[Connection]:
        """``count`` connections, each once its request to ``/hold`` is in progress."""
        connections = []
        for expected in range(self.held + 1, self.held + count + 1):
            connections.append(await _request(port, "/hold", source=source))
            await eventually(lambda expected=expected: self.held >= expected, "the request in progress")
        return connections


async def test_at_the_cap_a_new_connection_closes_the_one_kept_alive_the_longest() -> None:
    """Before, the first 128 connections held the cap for as long as they kept alive (each request re-armed it):
    130 idle clients locked Prometheus out. Now the one kept alive the longest since its last answer is closed
    (gracefully: a client about to reuse it sees it closed and connects again) and the newcomer served at once."""
    limits = ServerLimits(max_connections=2, new_connection_grace=3600.0)
    async with serving(limits) as server:
        oldest, newer = await _idle(server.port), await _idle(server.port)
        reader, writer = await _request(server.port)
        assert (await _answered(reader)).startswith(b"HTTP/1.1 200")
        assert await _closed(oldest[0])
        newer[1].write(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")  # the newer idle one is still served
        assert (await _answered(newer[0])).startswith(b"HTTP/1.1 200")
        assert server.open_connections == 2
        for _, other in (oldest, newer, (reader, writer)):
            other.close()


async def test_a_client_whose_idle_connection_was_closed_at_the_cap_connects_again_for_its_next_request() -> None:
    """What a user's own client sees (docs/security.md, "Server limits"): a pooling client (httpx, as requests)
    whose kept-alive connection was closed for a newcomer finds it closed before reusing it and connects again, and
    a client that opens a connection per request (curl) is never the one closed. Only a request sent in the very
    moment of the close meets a closed connection, as with any server's idle keep-alive expiry."""
    limits = ServerLimits(max_connections=1, new_connection_grace=3600.0)
    async with serving(limits) as server:
        url = f"http://127.0.0.1:{server.port}/"

        def pooled_then_crowded_out() -> list[int]:
            with httpx.Client() as pooled, httpx.Client() as other:
                statuses = [pooled.get(url).status_code]  # kept alive now, idle
                statuses.append(other.get(url).status_code)  # takes the only slot: the idle one is closed
                statuses.append(pooled.get(url).status_code)  # and takes it back
                return statuses

        assert await asyncio.to_thread(pooled_then_crowded_out) == [200, 200, 200]


@pytest.mark.parametrize("grace", [0.0, 3600.0])
async def test_a_new_connection_waiting_for_its_first_request_is_closed_only_past_its_grace(grace: float) -> None:
    """One that has sent nothing yet (or trickles its head, or sits in its TLS handshake) may be closed for room,
    the longest waiting first, but not within ``new_connection_grace`` of connecting: under a storm of new
    connections a scraper's own would be closed before its request was read."""
    limits = ServerLimits(max_connections=2, new_connection_grace=grace)
    async with serving(limits) as server:
        silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await eventually(lambda: server.open_connections == 2, "both accepted")
        reader, writer = await _request(server.port)
        if grace:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await reader.read()
            silent[1][1].close()  # the newcomer is served once a slot frees
        assert (await _answered(reader)).startswith(b"HTTP/1.1 200")
        if not grace:
            assert await _closed(silent[0][0])  # the one waiting the longest
            assert not silent[1][0].at_eof()
        for _, other in (*silent, (reader, writer)):
            other.close()


async def test_while_every_slot_holds_a_request_in_progress_a_new_connection_waits() -> None:
    holding = Holding()
    async with WebServer(holding.app(), limits=ServerLimits(max_connections=2, new_connection_grace=0.0)) as server:
        busy = await holding.requests(server.port, 2)
        reader, writer = await _request(server.port)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await reader.read()
        assert [r.at_eof() for r, _ in busy] == [False, False]  # a request in progress is never closed for room
        holding.release.set()
        for connection in (*busy, (reader, writer)):
            assert (await _answered(connection[0])).startswith(b"HTTP/1.1 200")
            connection[1].close()


async def test_waiting_connections_are_let_in_one_address_after_the_other() -> None:
    """Five connections from one address wait before one from another: the latter is let in second, not sixth, so
    a crowd from a few addresses does not queue a scraper behind it."""
    holding = Holding()
    served: list[str] = []

    async def record(request: web.Request) -> web.Response:
        served.append(request.path)
        return await holding.handle(request)

    app = web.Application()
    app.router.add_route("*", EVERY_PATH, record)
    limits = ServerLimits(max_connections=1, new_connection_grace=3600.0)
    async with WebServer(app, limits=limits) as server:
        (busy,) = await holding.requests(server.port, 1)
        waiting = []
        for path, source in [*((f"/crowd-{i}", "127.0.0.2") for i in range(5)), ("/scraper", "127.0.0.3")]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            waiting.append((reader, writer))
        await eventually(lambda: server._waiting_count == 6, "all six waiting")
        holding.release.set()
        busy[1].close()  # the slot frees
        for reader, writer in waiting:
            async with asyncio.timeout(10):
                assert (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
    assert served == ["/hold", "/crowd-0", "/scraper", "/crowd-1", "/crowd-2", "/crowd-3", "/crowd-4"]


async def test_one_address_holds_at_most_its_share() -> None:
    """Its own longest-idle connection is closed for a new one; when none can be, the new one is closed at once
    (the accept loop never waits on one address). Another address is served meanwhile."""
    holding = Holding()
    limits = ServerLimits(max_connections=10, max_connections_per_address=2, new_connection_grace=0.0)
    async with WebServer(holding.app(), limits=limits) as server:
        oldest, newer = await _idle(server.port, source="127.0.0.2"), await _idle(server.port, source="127.0.0.2")
        third = await _idle(server.port, source="127.0.0.2")
        assert await _closed(oldest[0])
        assert not newer[0].at_eof()
        busy = await holding.requests(server.port, 2, source="127.0.0.3")
        refused, _ = await _request(server.port, source="127.0.0.3")
        assert await _closed(refused)  # no answer: both of its share hold a request in progress
        other = await _idle(server.port, source="127.0.0.4")
        holding.release.set()
        for reader, _ in busy:
            assert (await _answered(reader)).startswith(b"HTTP/1.1 200")
        for _, writer in (oldest, newer, third, *busy, other):
            writer.close()


async def test_a_request_with_its_slot_set_aside_counts_neither_against_the_cap_nor_its_address() -> None:
    """What a request waiting for bcrypt does: its connection can neither be closed for room nor keep others
    out; afterwards it counts again."""
    holding = Holding(aside=True)
    limits = ServerLimits(max_connections=1, max_connections_per_address=1, new_connection_grace=0.0)
    async with WebServer(holding.app(), limits=limits) as server:
        (waiting,) = await holding.requests(server.port, 1)
        assert server.open_connections == 0
        served = await _idle(server.port)  # the same address, the only slot
        assert server.open_connections == 1
        holding.release.set()
        assert (await _answered(waiting[0])).startswith(b"HTTP/1.1 200")
        assert server.open_connections == 2  # counted again, past the cap: the next newcomer waits or closes one
        for _, writer in (waiting, served):
            writer.close()
        await _no_connections_left(server)


async def test_listen_on_all_interfaces_accepts_loopback() -> None:
    async with serving(host="") as server, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{server.port}/x")).status_code == 200


async def test_a_name_with_an_ipv6_and_an_ipv4_address_is_served_on_the_ipv4_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Debian's /etc/hosts gives ``localhost`` as ``::1`` first on a host with IPv6: the exporter would then listen
    on ``::1`` only, and ``curl http://127.0.0.1:10027`` (or a Prometheus target of that) would be refused."""
    resolve = socket.getaddrinfo

    def ipv6_first(host: str, port: int, *args: object, **kwargs: object) -> list[object]:
        if host != "dual-stack.test":
            return resolve(host, port, *args, **kwargs)  # type: ignore[arg-type]
        stream = socket.SOCK_STREAM
        return [
            (socket.AF_INET6, stream, socket.IPPROTO_TCP, "", ("::1", port, 0, 0)),
            (socket.AF_INET, stream, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", ipv6_first)
    async with serving(host="dual-stack.test") as server, httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{server.port}/x")).status_code == 200
