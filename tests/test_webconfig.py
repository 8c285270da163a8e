"""Exporter-toolkit web config: basic auth and (mutual) TLS on the exporter's endpoint, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt
import httpx
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter import webconfig
from exporter.app import Exporter
from exporter.config import build_settings
from exporter.simulator import ManualClock, Scenario, Simulator
from exporter.webconfig import (
    MAX_AUTH_WAITING,
    MAX_AUTH_WAITING_PER_ADDRESS,
    AuthBusy,
    BasicAuth,
    WebConfig,
    WebConfigError,
    WebSecurity,
    load_web_config,
    parse_web_config,
)
from exporter.webserver import EVERY_PATH, WebServer
from tests.conftest import eventually, running_exporter

PASSWORD = "s3cret-pässword"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    elif issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("test-ca", ca_key, None, ca=True)
    rogue_ca_key = _key()
    rogue_ca = _cert("rogue-ca", rogue_ca_key, None, ca=True)
    server_key, client_key, rogue_key = _key(), _key(), _key()
    return Pki(
        ca=_write_cert(ca, d / "ca.crt"),
        server_cert=_write_cert(_cert("localhost", server_key, (ca, ca_key), server=True), d / "server.crt"),
        server_key=_write_key(server_key, d / "server.key"),
        client_cert=_write_cert(_cert("prometheus", client_key, (ca, ca_key)), d / "client.crt"),
        client_key=_write_key(client_key, d / "client.key"),
        rogue_cert=_write_cert(_cert("intruder", rogue_key, (rogue_ca, rogue_ca_key)), d / "rogue.crt"),
        rogue_key=_write_key(rogue_key, d / "rogue.key"),
    )


@pytest.fixture(scope="module")
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


async def _hello(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peercert") if request.transport is not None else None
    subject = dict(x[0] for x in peer["subject"]) if peer else {}
    return web.Response(text=f"hello {subject.get('commonName', 'anonymous')}")


def _write_config(tmp_path: Path, text: str | dict[str, object]) -> Path:
    """``web.yml``, replaced in one step: a background check never reads it half written."""
    path, staged = tmp_path / "web.yml", tmp_path / "web.yml.new"
    staged.write_text(text if isinstance(text, str) else yaml.safe_dump(text))
    staged.replace(path)
    return path


NEVER = 3600.0
"""A background check interval no test waits for: tests that change files call ``check()`` themselves."""


@contextlib.asynccontextmanager
async def _serving(web_config: Path | WebSecurity) -> AsyncIterator[WebServer]:
    """``_hello`` behind a web config (basic auth, headers, TLS), on a real server."""
    security = web_config if isinstance(web_config, WebSecurity) else WebSecurity(web_config, check_every=NEVER)
    app = web.Application(middlewares=[security.middleware])
    app.router.add_get(EVERY_PATH, _hello)
    app.cleanup_ctx.append(security.running)
    async with WebServer(app, ssl_context=security.ssl_context if security.tls else None) as server:
        yield server


def _client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_right_password_gets_200_and_wrong_password_gets_401(tmp_path: Path, password_hash: str) -> None:
    path = _write_config(tmp_path, {"basic_auth_users": {"prometheus": password_hash}})
    async with (
        _serving(path) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client,
    ):
        good = await client.get("/metrics", auth=("prometheus", PASSWORD))
        cached = await client.get("/metrics", auth=("prometheus", PASSWORD))
        wrong = await client.get("/metrics", auth=("prometheus", "guess"))
        unknown_user = await client.get("/metrics", auth=("admin", PASSWORD))
        missing = await client.get("/-/healthy")
        garbage = await client.get("/metrics", headers={"Authorization": "Basic !!!not-base64"})
        bearer = await client.get("/metrics", headers={"Authorization": "Bearer abc"})
    assert (good.status_code, good.text) == (200, "hello anonymous")
    assert cached.status_code == 200
    for response in (wrong, unknown_user, missing, garbage, bearer):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic ")
        assert "hello" not in response.text


async def test_configured_headers_are_added_to_every_response(tmp_path: Path, password_hash: str) -> None:
    path = _write_config(
        tmp_path,
        f"basic_auth_users:\n  p: '{password_hash}'\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=60\n",
    )
    async with (
        _serving(path) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client,
    ):
        denied = await client.get("/")
        allowed = await client.get("/", auth=("p", PASSWORD))
    for response in (denied, allowed):
        assert response.headers["x-frame-options"] == "deny"
        assert response.headers["strict-transport-security"] == "max-age=60"


async def test_tls_server_serves_https_with_relative_certificate_paths(pki: Pki) -> None:
    path = _write_config(pki.ca.parent, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    async with (
        _serving(path) as server,
        httpx.AsyncClient(verify=_client_context(pki)) as client,
    ):
        response = await client.get(f"https://localhost:{server.port}/")
    assert (response.status_code, response.text) == (200, "hello anonymous")


def _mtls_config(tmp_path: Path, pki: Pki, auth_type: str, max_version: str = "TLS13") -> Path:
    return _write_config(
        tmp_path,
        {
            "tls_server_config": {
                "cert_file": str(pki.server_cert),
                "key_file": str(pki.server_key),
                "client_auth_type": auth_type,
                "client_ca_file": str(pki.ca),
                "max_version": max_version,
            }
        },
    )


@pytest.mark.parametrize("max_version", ["TLS12", "TLS13"])
async def test_required_client_cert_missing_refuses_the_connection(tmp_path: Path, pki: Pki, max_version: str) -> None:
    async with _serving(_mtls_config(tmp_path, pki, "RequireAndVerifyClientCert", max_version)) as server:
        for cert, key in ((None, None), (pki.rogue_cert, pki.rogue_key)):
            async with httpx.AsyncClient(verify=_client_context(pki, cert, key)) as client:
                with pytest.raises(httpx.TransportError):
                    await client.get(f"https://localhost:{server.port}/")


async def test_required_client_cert_present_is_accepted_and_visible_to_the_handler(tmp_path: Path, pki: Pki) -> None:
    async with (
        _serving(_mtls_config(tmp_path, pki, "RequireAndVerifyClientCert")) as server,
        httpx.AsyncClient(verify=_client_context(pki, pki.client_cert, pki.client_key)) as client,
    ):
        response = await client.get(f"https://localhost:{server.port}/")
    assert (response.status_code, response.text) == (200, "hello prometheus")


async def test_optional_client_cert_allows_anonymous_but_rejects_untrusted_certs(tmp_path: Path, pki: Pki) -> None:
    async with _serving(_mtls_config(tmp_path, pki, "VerifyClientCertIfGiven", "TLS12")) as server:
        url = f"https://localhost:{server.port}/"
        async with httpx.AsyncClient(verify=_client_context(pki)) as client:
            assert (await client.get(url)).text == "hello anonymous"
        async with httpx.AsyncClient(verify=_client_context(pki, pki.client_cert, pki.client_key)) as client:
            assert (await client.get(url)).text == "hello prometheus"
        async with httpx.AsyncClient(verify=_client_context(pki, pki.rogue_cert, pki.rogue_key)) as client:
            with pytest.raises(httpx.TransportError):
                await client.get(url)


async def test_tls_and_basic_auth_combine(tmp_path: Path, pki: Pki, password_hash: str) -> None:
    path = _write_config(
        tmp_path,
        {
            "tls_server_config": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)},
            "basic_auth_users": {"prometheus": password_hash},
        },
    )
    async with (
        _serving(path) as server,
        httpx.AsyncClient(verify=_client_context(pki), base_url=f"https://localhost:{server.port}") as client,
    ):
        assert (await client.get("/")).status_code == 401
        assert (await client.get("/", auth=("prometheus", PASSWORD))).status_code == 200


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"tls_server_config": {"cert_file": "a"}}, "tls_server_config.key_file: Field required"),
        ({"basic_auth_user": {}}, "basic_auth_user: Extra inputs are not permitted"),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            "tls_server_config: client_auth_type RequireAndVerifyClientCert needs client_ca_file",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "RequestClientCert"}},
            "tls_server_config: client_auth_type RequestClientCert is not supported",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Sometimes"}},
            "tls_server_config.client_auth_type: Input should be 'NoClientCert'",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS13", "max_version": "TLS12"}},
            "tls_server_config: min_version TLS13 is newer than max_version TLS12",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "cipher_suites": ["X"]}},
            "tls_server_config: cipher_suites is not supported",
        ),
        ({"http_server_config": {"headers": {"Set-Cookie": "a=b"}}}, "header 'Set-Cookie' can not be configured"),
        ({"http_server_config": {"headers": {"x-frame-options": "deny"}}}, "'x-frame-options' can not be configured"),
        (
            {"http_server_config": {"headers": {"X-Frame-Options": "allow-from x"}}},
            "invalid value for X-Frame-Options: expected one of deny, sameorigin, got 'allow-from x'",
        ),
        (
            {"http_server_config": {"headers": {"X-Content-Type-Options": "sniff"}}},
            "invalid value for X-Content-Type-Options: expected one of nosniff",
        ),
        (
            {"http_server_config": {"headers": {"Content-Security-Policy": "a\r\nSet-Cookie: x"}}},
            "must not contain line breaks",
        ),
        (
            {"http_server_config": {"rate_limit": {"interval": "1s", "burst": 10}}},
            "http_server_config: rate_limit is not supported by feldera-exporter",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_ca": "-----BEGIN CERTIFICATE-----"}},
            "tls_server_config: inline client_ca is not supported by feldera-exporter; use client_ca_file",
        ),
        ({"basic_auth_users": {"a:b": "$2b$" + "x" * 56}}, "user name 'a:b' must be non-empty and must not contain"),
        ([1, 2], "(top level): expected a mapping"),
    ],
)
def test_invalid_web_config_is_reported_as_location_and_message(document: object, expected: str) -> None:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(document, Path("."))
    assert expected in str(info.value)


def test_plain_text_password_is_rejected_without_echoing_it() -> None:
    with pytest.raises(WebConfigError) as info:
        parse_web_config({"basic_auth_users": {"prometheus": "hunter2-plain"}}, Path("."))
    assert "hunter2" not in str(info.value)
    assert "is not a bcrypt hash" in str(info.value)


def test_password_hashes_never_appear_in_repr(password_hash: str) -> None:
    config = parse_web_config({"basic_auth_users": {"prometheus": password_hash}}, Path("."))
    assert password_hash not in repr(config)
    assert password_hash not in str(config)


def test_unreadable_certificate_is_a_clear_error(tmp_path: Path) -> None:
    config = parse_web_config({"tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"}}, tmp_path)
    with pytest.raises(WebConfigError, match=r"tls_server_config.cert_file/key_file: cannot load .*nope.crt"):
        config.ssl_context()


def test_missing_or_malformed_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read"):
        load_web_config(tmp_path / "absent.yml")
    with pytest.raises(WebConfigError, match=r"web\.yml:2:1: expected ',' or '\]', but got '<stream end>'"):
        load_web_config(_write_config(tmp_path, "tls_server_config: [unclosed\n"))
    with pytest.raises(WebConfigError, match=r"web\.yml: special characters are not allowed \(character #x0007 at"):
        load_web_config(_write_config(tmp_path, "basic_auth_users:\n  u: \a\n"))
    (tmp_path / "latin1.yml").write_bytes(b"basic_auth_users:\n  j\xf6rg: x\n")
    with pytest.raises(WebConfigError, match=r"latin1\.yml: cannot read: not UTF-8 text"):
        load_web_config(tmp_path / "latin1.yml")


PASTED = "plaintext-PASSWORD-123"
YAML_ERRORS_WITH_A_PASTED_PASSWORD = [
    (
        f'basic_auth_users:\n  prometheus: "{PASTED}\n',  # quote left open: PyYAML's message quotes the line
        "web.yml:3:1: found unexpected end of stream (while scanning a quoted scalar at 2:15)",
    ),
    (
        f"basic_auth_users:\n  prometheus: !{PASTED}\n",  # read as a tag, which PyYAML's problem names
        "web.yml:2:15: could not determine a constructor for the tag (name not shown)",
    ),
]


@pytest.mark.parametrize(("document", "expected"), YAML_ERRORS_WITH_A_PASTED_PASSWORD)
def test_a_yaml_error_at_start_up_names_line_column_and_problem_but_not_the_text(
    tmp_path: Path, document: str, expected: str
) -> None:
    web = _write_config(tmp_path, document)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"targets": [{"url": "http://127.0.0.1:9"}], "web": {"config_file": str(web)}}))
    commands = (
        ("check-config", str(config)),
        (
            "run",
            "--feldera-url",
            "http://127.0.0.1:9",
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.config.file",
            str(web),
        ),
    )
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "exporter", *command], capture_output=True, text=True, timeout=60, check=False
        )
        assert PASTED not in result.stderr + result.stdout, command
        assert result.returncode != 0 and expected in result.stderr, (command, result.stderr)


@pytest.mark.parametrize(("document", "expected"), YAML_ERRORS_WITH_A_PASTED_PASSWORD)
async def test_a_yaml_error_on_reload_names_line_column_and_problem_but_not_the_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, document: str, expected: str
) -> None:
    security = WebSecurity(_write_config(tmp_path, {}), check_every=NEVER)
    _write_config(tmp_path, document)
    await security.check()
    assert PASTED not in caplog.text
    refusals = _refusals(caplog)
    assert len(refusals) == 1 and expected in refusals[0], refusals


def test_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    config = load_web_config(_write_config(tmp_path, ""))
    assert config.ssl_context() is None
    assert config.basic_auth_users == {}


@contextlib.asynccontextmanager
async def exporter_behind(web_config: Path) -> AsyncIterator[Exporter]:
    """A started exporter with this web config, after one poll cycle of a one-pipeline simulator."""
    scenario = Scenario.model_validate({"pipelines": [{"name": "orders", "status": "Running"}]})
    async with Simulator(scenario, clock=ManualClock()) as sim:
        settings = build_settings(
            {"web": {"listen_address": "127.0.0.1:0", "config_file": str(web_config)}, "targets": [{"url": sim.url}]},
            env={},
        )
        exporter = Exporter(settings)
        await exporter.start(poll_loop=False)
        try:
            await exporter.poll_once()
            yield exporter
        finally:
            await exporter.stop()


async def test_exporter_serves_metrics_over_tls_with_basic_auth_from_web_config_file(
    pki: Pki, password_hash: str, tmp_path: Path
) -> None:
    web = _write_config(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  prometheus: '{password_hash}'\n",
    )
    async with exporter_behind(web) as exporter:
        assert exporter.url.startswith("https://")
        async with httpx.AsyncClient(verify=_client_context(pki), base_url=exporter.url) as client:
            anonymous = await client.get("/metrics")
            refused = [
                await client.get("/-/healthy"),
                await client.get("/api/v1/reset-watches"),
                await client.get("/nope"),
                await client.post("/metrics"),
            ]
            scraped = await client.get("/metrics", auth=("prometheus", PASSWORD))
    assert anonymous.status_code == 401
    assert [r.status_code for r in refused] == [401] * 4  # the middleware is in front of every route
    assert scraped.status_code == 200
    assert 'feldera_up{target="default"} 1.0' in scraped.text


# ---- reloading (cert-manager rotation) ------------------------------------------------------------------------


async def _served_common_name(port: int, context: ssl.SSLContext) -> str:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    peer = writer.get_extra_info("peercert")
    writer.close()
    return str(dict(x[0] for x in peer["subject"])["commonName"])


def _issuer(directory: Path) -> tuple[Callable[[str, str], None], ssl.SSLContext]:
    """A CA of its own: ``issue(common_name, stem)`` writes a new ``stem.key`` and then ``stem.crt`` into
    ``directory`` (over the old files, as cert-manager does); and a client context that trusts the CA."""
    ca_key = _key()
    ca = _cert("rotation-ca", ca_key, None, ca=True)

    def issue(common_name: str, stem: str) -> None:
        key = _key()
        _write_key(key, directory / f"{stem}.key")
        _write_cert(_cert(common_name, key, (ca, ca_key), server=True), directory / f"{stem}.crt")

    return issue, ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not reloaded, keeping the one in force" in r.getMessage()]


async def test_rotated_certificate_is_served_to_new_connections_without_restart(tmp_path: Path) -> None:
    issue, client = _issuer(tmp_path)
    issue("first", "tls")
    path = _write_config(tmp_path, "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
    security = WebSecurity(path, check_every=NEVER)
    async with _serving(security) as server:
        assert await _served_common_name(server.port, client) == "first"
        issue("second", "tls")
        assert await _served_common_name(server.port, client) == "first"  # connections never read the files
        await security.check()
        assert await _served_common_name(server.port, client) == "second"


async def test_a_change_refused_for_missing_certificates_is_loaded_when_they_arrive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """web.yml is pointed at new files before they are copied in. Before, a refusal remembered only the files in
    force (web.yml and the old certificate), so the new files' arrival was no change and the old certificate
    stayed until it expired."""
    issue, client = _issuer(tmp_path)
    issue("first", "a")
    path = _write_config(tmp_path, "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n")
    security = WebSecurity(path, check_every=NEVER)
    async with _serving(security) as server:
        _write_config(tmp_path, "tls_server_config:\n  cert_file: b.crt\n  key_file: b.key\n")
        await security.check()
        await security.check()  # the same files: not tried (and logged) again
        assert await _served_common_name(server.port, client) == "first"
        issue("second", "b")
        await security.check()
        assert await _served_common_name(server.port, client) == "second"
    refusals = _refusals(caplog)
    assert len(refusals) == 1 and "b.crt" in refusals[0], refusals


async def test_a_file_changed_right_after_it_was_read_is_picked_up_by_the_next_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the files were stamped after loading: a change between the read and the stamp was never seen."""
    path = _write_config(tmp_path, {})
    security = WebSecurity(path, check_every=NEVER)
    changes = [{"http_server_config": {"headers": {"X-Frame-Options": "sameorigin"}}}]

    def read_then_changed(read: Path) -> WebConfig:
        config = load_web_config(read)
        if changes:
            _write_config(tmp_path, changes.pop())
        return config

    monkeypatch.setattr(webconfig, "load_web_config", read_then_changed)
    async with _serving(security) as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        _write_config(tmp_path, {"http_server_config": {"headers": {"X-Frame-Options": "deny"}}})
        await security.check()
        assert (await client.get("/")).headers["X-Frame-Options"] == "deny"
        await security.check()
        assert (await client.get("/")).headers["X-Frame-Options"] == "sameorigin"


async def test_changed_users_apply_without_restart_and_a_broken_file_keeps_the_config_in_force(
    tmp_path: Path, password_hash: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_config(tmp_path, {"basic_auth_users": {"old": password_hash}})
    security = WebSecurity(path, check_every=NEVER)
    async with (
        _serving(security) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client,
    ):
        assert (await client.get("/", auth=("old", PASSWORD))).status_code == 200
        _write_config(tmp_path, {"basic_auth_users": {"new": password_hash}})
        await security.check()
        assert (await client.get("/", auth=("new", PASSWORD))).status_code == 200
        assert (await client.get("/", auth=("old", PASSWORD))).status_code == 401  # not kept by the success cache
        _write_config(tmp_path, "basic_auth_users: [broken\n")
        await security.check()
        await security.check()  # the same broken files: not tried (and logged) again
        assert (await client.get("/", auth=("new", PASSWORD))).status_code == 200
        assert (await client.get("/")).status_code == 401
        path.write_bytes(b"basic_auth_users:\n  j\xf6rg: x\n")  # not UTF-8: the same, not a 500 per request
        await security.check()
        assert (await client.get("/", auth=("new", PASSWORD))).status_code == 200
    refusals = _refusals(caplog)
    assert len(refusals) == 2, refusals  # once per change
    assert "while parsing a flow sequence" in refusals[0] and "not UTF-8" in refusals[1]


async def test_switching_tls_on_is_refused_and_plain_http_stays(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_config(tmp_path, {})
    security = WebSecurity(path, check_every=NEVER)
    async with _serving(security) as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        _write_config(
            tmp_path, {"tls_server_config": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}}
        )
        await security.check()
        assert (await client.get("/")).text == "hello anonymous"
    assert "switching TLS on or off needs a restart" in caplog.text


async def test_the_background_check_picks_up_changes_and_survives_a_check_that_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """YAML nested too deeply raises RecursionError, not a WebConfigError (before: a 500 on every request)."""
    path = _write_config(tmp_path, {})
    async with (
        _serving(WebSecurity(path, check_every=0.05)) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client,
    ):
        _write_config(tmp_path, "http_server_config: " + "[" * 5000 + "]" * 5000 + "\n")
        await eventually(lambda: "RecursionError" in caplog.text, "the failed reload to be logged")
        assert (await client.get("/")).status_code == 200
        _write_config(tmp_path, {"http_server_config": {"headers": {"X-Frame-Options": "deny"}}})

        async def reloaded() -> bool:
            return (await client.get("/")).headers.get("X-Frame-Options") == "deny"

        await eventually(reloaded, "the next change to be picked up")
    assert sum("not reloaded" in record.getMessage() for record in caplog.records) == 1


async def test_a_failed_start_ends_the_background_check(tmp_path: Path) -> None:
    """The port is taken: the server's start fails, and the application's start-up is undone with it."""
    security = WebSecurity(_write_config(tmp_path, {}), check_every=NEVER)
    app = web.Application(middlewares=[security.middleware])
    app.cleanup_ctx.append(security.running)
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(OSError):
        await WebServer(app, "127.0.0.1", taken.getsockname()[1]).start()
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("web-config-check")]


@contextlib.contextmanager
def _stuck(path: Path, then: str) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Replace ``path`` by a FIFO whose writer holds it open without writing: a reader is stuck in ``read()`` as on a
    hung mount, until the block ends (or 10 s pass) and ``then`` is written. Yields (a reader is stuck, released)."""
    fifo = path.with_name("fifo")
    os.mkfifo(fifo)
    os.replace(fifo, path)
    stuck, release, released = threading.Event(), threading.Event(), threading.Event()

    def writer() -> None:
        with contextlib.suppress(OSError), path.open("w") as pipe:  # open() waits for a reader
            stuck.set()
            release.wait(10)
            released.set()  # before the reader can go on
            pipe.write(then)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield stuck, released
    finally:
        release.set()
        if not stuck.is_set():  # nobody opened it: let the writer's open() return
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        thread.join(10)


async def test_a_web_config_check_stuck_on_its_file_delays_no_scrape(tmp_path: Path) -> None:
    """Before, the check ran in the request: the scrape that started it waited as long as the read did."""
    path = _write_config(tmp_path, {"http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}}})
    async with exporter_behind(path) as exporter, httpx.AsyncClient(base_url=exporter.url) as client:
        with _stuck(path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n") as (stuck, released):

            async def scraped_while_stuck() -> bool:
                assert (await client.get("/metrics")).status_code == 200
                return stuck.is_set()

            await eventually(scraped_while_stuck, "the background check to read the web config")
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200 and not released.is_set()
            assert 'feldera_up{target="default"} 1.0' in scraped.text

        async def reloaded() -> bool:
            return (await client.get("/metrics")).headers.get("X-Frame-Options") == "deny"

        await eventually(reloaded, "the configuration read from the released file")


@pytest.mark.e2e
async def test_sigterm_exits_within_seconds_while_a_web_config_check_is_stuck(tmp_path: Path) -> None:
    """The stuck read is in a daemon thread: neither the exporter's stop nor the interpreter's exit waits for it."""
    path = _write_config(tmp_path, {})
    scenario = Scenario.model_validate({"pipelines": [{"name": "orders", "status": "Running"}]})
    async with (
        Simulator(scenario) as sim,
        running_exporter(sim.url, tmp_path, "1h", "--web.config.file", str(path)) as running,
    ):
        with _stuck(path, "{}\n") as (stuck, released):
            await eventually(stuck.is_set, "the background check to read the web config")
            running.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(running.process.wait(), 10) == 0
            assert not released.is_set()
    assert "shutting down" in running.log.read_text()


# ---- a flood of wrong passwords -------------------------------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.slow
async def test_bcrypt_flood_does_not_delay_a_scrape_or_a_poll_cycle(tmp_path: Path) -> None:
    """Wrong passwords queue in the two bcrypt threads, at most 16 at once and 4 per address, each with its slot
    set aside; the rest are answered 429 (this address) or 503 (all) at once, unchecked, and every refusal closes
    its connection. Rendering (asyncio's default pool) and a scrape with a remembered password are served
    meanwhile. Before, each waiting request held its connection slot: 300 of them made scrapes take 17 to 45 s."""
    costly = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web_config = _write_config(tmp_path, {"basic_auth_users": {"prometheus": costly}})
    good = _basic("prometheus", PASSWORD)
    async with (
        exporter_behind(web_config) as exporter,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        async with session.get(f"{exporter.url}/metrics", headers=good) as primed:  # remembered from now on
            assert primed.status == 200

        async def wrong(i: int) -> tuple[int | str, str | None]:
            bad = _basic("prometheus", f"guess-{i}")
            try:
                async with session.get(f"{exporter.url}/metrics", headers=bad) as response:
                    return response.status, response.headers.get("Connection")
            except aiohttp.ServerDisconnectedError:  # past the address's share of connections: closed at once
                return "refused", "close"

        flood = [asyncio.create_task(wrong(i)) for i in range(100)]
        await eventually(lambda: sum(task.done() for task in flood) >= 90, "the flood beyond the queue refused")
        await exporter.poll_once()  # renders in asyncio's default thread pool
        async with session.get(f"{exporter.url}/metrics", headers=good) as scraped:
            text = await scraped.text()
        outcomes = await asyncio.gather(*flood)
    assert scraped.status == 200 and 'feldera_up{target="default"} 1.0' in text
    statuses = [status for status, _ in outcomes]
    assert {401, 429} <= set(statuses) <= {401, 429, "refused"} and statuses.count(401) < 50
    assert {connection for _, connection in outcomes} == {"close"}


async def test_password_checks_wait_for_bcrypt_at_most_16_at_once_and_4_per_address() -> None:
    """Checks past the bounds are refused at once, without bcrypt: 429 for an address over its share, 503 when the
    queue is full; a remembered password never queues."""
    gate = threading.Event()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))
    with ThreadPoolExecutor(max_workers=2) as executor:
        auth = BasicAuth({"prometheus": hashed.decode()}, executor)
        right = _basic("prometheus", PASSWORD)["Authorization"]
        assert await auth.allows(right, "10.0.0.1")  # remembered from now on
        executor.submit(gate.wait)  # both threads busy until the gate opens: the checks below wait
        executor.submit(gate.wait)
        waiting = []
        for address in (f"10.0.0.{i}" for i in range(MAX_AUTH_WAITING // MAX_AUTH_WAITING_PER_ADDRESS)):
            for i in range(MAX_AUTH_WAITING_PER_ADDRESS):
                wrong = _basic("prometheus", f"guess-{i}")["Authorization"]
                waiting.append(asyncio.create_task(auth.allows(wrong, address)))
        await asyncio.sleep(0)  # each check has taken its place in the queue
        with pytest.raises(AuthBusy) as per_address:
            await auth.allows(_basic("prometheus", "again")["Authorization"], "10.0.0.0")
        with pytest.raises(AuthBusy) as full:
            await auth.allows(_basic("prometheus", "again")["Authorization"], "10.0.0.99")
        assert await auth.allows(right, "10.0.0.99")  # remembered: no queue
        gate.set()
        assert await asyncio.gather(*waiting) == [False] * MAX_AUTH_WAITING
        assert not await auth.allows(_basic("prometheus", "again")["Authorization"], "10.0.0.0")  # room again
    assert (per_address.value.status, full.value.status) == (429, 503)
