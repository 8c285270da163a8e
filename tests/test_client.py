"""FelderaClient against a real HTTP server: auth, typed errors, retries, timeouts, encoding, self-stats."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from exporter.client import FelderaClient, parse_retry_after
from exporter.config import TargetSettings
from exporter.errors import ApiError, ConnectionFailed, InvalidResponse, RequestTimeout
from tests.conftest import ReplyServer, Response, ScriptedFeldera, feldera_error, hang, json_response, pipeline_json


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_client(url: str, *, api_key: str | None = None, timeout: float = 5.0, **kwargs: object) -> FelderaClient:
    settings = TargetSettings(url=url, timeout=timeout, api_key=SecretStr(api_key) if api_key else None)
    kwargs.setdefault("sleep", FakeSleep())
    return FelderaClient(settings, **kwargs)  # type: ignore[arg-type]


def requests_of(client: FelderaClient) -> dict[tuple[str, str], int]:
    return {(endpoint, code): n for endpoint, code, n in client.api_stats.requests()}


async def test_api_key_is_sent_as_bearer_token(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines(pipeline_json("p1"))
    async with make_client(feldera.url, api_key="apikey:secret") as client:
        pipelines = await client.list_pipelines()
    assert [p.name for p in pipelines] == ["p1"]
    assert feldera.requests[0].headers["authorization"] == "Bearer apikey:secret"
    assert feldera.requests[0].query == {"selector": "status_with_connectors"}
    assert "secret" not in repr(client)


async def test_no_authorization_header_without_key(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines()
    async with make_client(feldera.url) as client:
        assert await client.list_pipelines() == []
    assert "authorization" not in feldera.requests[0].headers


async def test_404_raises_api_error_with_error_code_and_is_not_retried(feldera: ScriptedFeldera) -> None:
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError) as caught:
            await client.checkpoint_status("gone")
    assert caught.value.status == 404
    assert caught.value.error_code == "UnknownPipelineName"
    assert caught.value.code == "404"
    assert len(feldera.requests) == 1
    assert requests_of(client) == {("checkpoint_status", "404"): 1}


async def test_500_is_not_retried(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/stats"] = feldera_error(500, "InitializationError", "boom")
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError) as caught:
            await client.stats("p")
    assert caught.value.error_code == "InitializationError"
    assert len(feldera.requests) == 1


async def test_401_is_an_api_error_and_not_retried(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines"] = feldera_error(401, "Unauthorized", "bad key")
    async with make_client(feldera.url, api_key="wrong") as client:
        with pytest.raises(ApiError) as caught:
            await client.list_pipelines()
    assert caught.value.status == 401
    assert len(feldera.requests) == 1
    assert "wrong" not in str(caught.value)


async def test_503_with_retry_after_is_retried_after_that_delay(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = [
        Response(status=503, body=b"Service Unavailable", content_type="text/plain", headers=[("retry-after", "1")]),
        json_response({"success": 7, "failure": None}),
    ]
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep) as client:
        status = await client.checkpoint_status("p")
    assert status.success == 7
    assert sleep.delays == [1.0]
    assert requests_of(client) == {("checkpoint_status", "503"): 1, ("checkpoint_status", "200"): 1}


@pytest.mark.parametrize(
    "error_code",
    [
        "PipelineInteractionNotDeployed",
        "PipelineUnavailable",
        "PipelineInteractionUnreachable",
        "Initializing",
        "Suspended",
    ],
)
async def test_503_about_the_pipelines_state_is_not_retried(feldera: ScriptedFeldera, error_code: str) -> None:
    """The answer describes the pipeline; retrying within the cycle only delays it (the next cycle asks again)."""
    feldera.routes["/v0/pipelines/p/checkpoint/sync_status"] = feldera_error(503, error_code, retry_after="0")
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep) as client:
        with pytest.raises(ApiError) as caught:
            await client.sync_status("p")
    assert caught.value.error_code == error_code
    assert sleep.delays == []
    assert requests_of(client) == {("sync_status", "503"): 1}


async def test_503_with_another_error_code_is_retried(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines"] = [feldera_error(503, "ServiceUnavailable"), json_response([])]
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep, backoff=0.25) as client:
        assert await client.list_pipelines() == []
    assert sleep.delays == [0.25]


async def test_retry_after_longer_than_the_bound_ends_the_attempts(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = feldera_error(
        503, "PipelineInteractionNotDeployed", retry_after="60"
    )
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep, max_retry_delay=2.0) as client:
        with pytest.raises(ApiError) as caught:
            await client.checkpoint_status("p")
    assert caught.value.retry_after == 60.0
    assert sleep.delays == []
    assert len(feldera.requests) == 1


async def test_502_html_body_is_reported_without_error_code_and_retried_with_backoff(
    feldera: ScriptedFeldera,
) -> None:
    feldera.routes["/v0/pipelines"] = Response(
        status=502, body=b"<html><body>Bad Gateway</body></html>", content_type="text/html"
    )
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep, retries=2, backoff=0.5) as client:
        with pytest.raises(ApiError) as caught:
            await client.list_pipelines()
    assert caught.value.status == 502
    assert caught.value.error_code is None
    assert "Bad Gateway" in caught.value.body_excerpt
    assert sleep.delays == [0.5, 1.0]
    assert requests_of(client) == {("list_pipelines", "502"): 3}


async def test_hanging_server_times_out_and_get_is_retried(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/stats"] = hang
    async with make_client(feldera.url, timeout=0.2, retries=1) as client:
        with pytest.raises(RequestTimeout):
            await client.stats("p")
    assert requests_of(client) == {("stats", "timeout"): 2}


async def test_post_is_not_retried_after_a_timeout(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint/sync"] = hang
    async with make_client(feldera.url, timeout=0.2) as client:
        with pytest.raises(RequestTimeout):
            await client.checkpoint_sync("p")
    assert requests_of(client) == {("checkpoint_sync", "timeout"): 1}


async def test_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with make_client(f"http://127.0.0.1:{port}", retries=1) as client:
        with pytest.raises(ConnectionFailed):
            await client.list_pipelines()
    assert requests_of(client) == {("list_pipelines", "connection_error"): 2}


async def test_truncated_json_is_an_invalid_response(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/stats"] = Response(body=b'{"inputs": [{"endpoint_name": "t.c"')
    async with make_client(feldera.url) as client:
        with pytest.raises(InvalidResponse):
            await client.stats("p")
    assert requests_of(client) == {("stats", "invalid_response"): 1}
    assert len(feldera.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>Bad Gateway</html>", "body is not JSON: '<html>Bad Gateway</html>'"),
        (b'{"success": 1', "body is not JSON"),
        (b'{"success": "\xff"}', "body is not JSON"),
        (b"[1, 2]", "unexpected JSON shape for CheckpointStatus"),
        (b'{"failure": {"error": "x", "sequence_number": 1}, "success": 1} trailing', "body is not JSON"),
    ],
)
async def test_not_json_and_wrong_shape_are_told_apart(feldera: ScriptedFeldera, body: bytes, message: str) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = Response(body=body)
    async with make_client(feldera.url) as client:
        with pytest.raises(InvalidResponse) as caught:
            await client.checkpoint_status("p")
    assert message in str(caught.value)
    assert requests_of(client) == {("checkpoint_status", "invalid_response"): 1}


async def test_json_the_standard_library_accepts_is_still_accepted(feldera: ScriptedFeldera) -> None:
    """pydantic's JSON parser refuses a UTF-8 byte order mark and UTF-16; json.loads takes them."""
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = Response(body=b'\xef\xbb\xbf{"success": 4, "failure": null}')
    feldera.routes["/v0/pipelines/p/stats"] = Response(body='{"inputs": [], "outputs": []}'.encode("utf-16"))
    feldera.routes["/v0/pipelines"] = Response(body=b"\xef\xbb\xbf" + json.dumps([pipeline_json("a")]).encode())
    async with make_client(feldera.url) as client:
        assert (await client.checkpoint_status("p")).success == 4
        assert (await client.stats("p")).inputs == []
        assert [p.name for p in await client.list_pipelines()] == ["a"]


async def test_list_that_is_not_a_json_list_is_an_invalid_response(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines"] = json_response({"pipelines": []})
    async with make_client(feldera.url) as client:
        with pytest.raises(InvalidResponse):
            await client.list_pipelines()


async def test_malformed_list_entries_are_skipped(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines(pipeline_json("good"), {"no_name": True}, "text", pipeline_json("also-good"))
    async with make_client(feldera.url) as client:
        pipelines = await client.list_pipelines()
    assert [p.name for p in pipelines] == ["good", "also-good"]


async def test_repeated_pipeline_names_keep_the_first_entry(feldera: ScriptedFeldera) -> None:
    """Found by the robustness fuzzer: a repeated name would otherwise give duplicate series."""
    feldera.list_pipelines(
        pipeline_json("orders", version=1), pipeline_json("other", version=2), pipeline_json("orders", version=3)
    )
    async with make_client(feldera.url) as client:
        pipelines = await client.list_pipelines()
    assert [(p.name, p.version) for p in pipelines] == [("orders", 1), ("other", 2)]


async def test_path_segments_are_url_encoded(feldera: ScriptedFeldera) -> None:
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError):
            await client.input_connector_stats("a/b c", '"Orders"', "kafka.in")
    assert feldera.requests[0].raw_path == "/v0/pipelines/a%2Fb%20c/tables/%22Orders%22/connectors/kafka.in/stats"


async def test_base_url_path_prefix_is_kept(feldera: ScriptedFeldera) -> None:
    feldera.routes["/feldera/v0/pipelines"] = json_response([])
    async with make_client(feldera.url + "/feldera") as client:
        assert await client.list_pipelines() == []


async def test_cluster_health_503_body_is_parsed(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/cluster_healthz"] = json_response(
        {"all_healthy": False, "api": {"healthy": True}, "runner": {"healthy": False}}, status=503
    )
    async with make_client(feldera.url) as client:
        health = await client.cluster_health()
    assert health.all_healthy is False
    assert health.runner is not None and health.runner.healthy is False
    assert requests_of(client) == {("cluster_healthz", "503"): 1}


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, {"checkpoint_sequence_number": 4}), (202, {"checkpoint_uuid": "u", "incarnation_uuid": "i"})],
)
async def test_checkpoint_sync_accepts_200_and_202(feldera: ScriptedFeldera, status: int, body: dict) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint/sync"] = json_response(body, status)
    async with make_client(feldera.url) as client:
        answer = await client.checkpoint_sync("p")
    assert feldera.requests[0].method == "POST"
    assert answer.checkpoint_sequence_number == body.get("checkpoint_sequence_number")
    assert answer.checkpoint_uuid == body.get("checkpoint_uuid")


async def test_checkpoint_sync_on_community_edition_raises_501(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint/sync"] = feldera_error(501, "EnterpriseFeature")
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError) as caught:
            await client.checkpoint_sync("p")
    assert caught.value.status == 501
    assert len(feldera.requests) == 1


async def test_reset_status_sends_the_token_and_returns_the_json_body(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/reset_status"] = json_response({"status": "completed"})
    async with make_client(feldera.url) as client:
        body = await client.reset_status("p", "tok/1")
    assert body == {"status": "completed"}
    assert feldera.requests[0].query == {"token": "tok/1"}


async def test_get_pipeline_and_sync_status_and_output_connector_stats(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p"] = json_response(pipeline_json("p"))
    feldera.routes["/v0/pipelines/p/checkpoint/sync_status"] = json_response(
        {"success": "u1", "failure": None, "periodic": None}
    )
    feldera.routes["/v0/pipelines/p/views/v/connectors/out/stats"] = json_response(
        {"endpoint_name": "v.out", "metrics": {"transmitted_records": 3}}
    )
    async with make_client(feldera.url) as client:
        assert (await client.get_pipeline("p")).deployment_runtime_status == "Running"
        assert (await client.sync_status("p")).success == "u1"
        assert (await client.output_connector_stats("p", "v", "out")).metrics.transmitted_records == 3
    assert feldera.requests[0].query == {"selector": "status"}


async def test_request_durations_are_recorded_per_endpoint(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines()
    ticks = iter([10.0, 10.3, 20.0, 20.01])
    async with make_client(feldera.url, monotonic=lambda: next(ticks)) as client:
        await client.list_pipelines()
        await client.list_pipelines()
    (timing,) = client.api_stats.timings()
    assert timing.endpoint == "list_pipelines"
    assert timing.count == 2
    assert timing.total_seconds == pytest.approx(0.31)
    assert dict(zip(timing.bounds, timing.counts, strict=True))[0.025] == 1
    assert dict(zip(timing.bounds, timing.counts, strict=True))[0.5] == 2


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_feldera(tls_files: tuple[Path, Path]) -> AsyncIterator[ScriptedFeldera]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    scripted = ScriptedFeldera()
    scripted.server = ReplyServer(scripted.handle, ssl_context=context)
    await scripted.server.start()
    scripted.list_pipelines(pipeline_json("p"))
    try:
        yield scripted
    finally:
        await scripted.server.close()


def https_client(feldera: ScriptedFeldera, **fields: object) -> FelderaClient:
    url = feldera.url.replace("http://", "https://")
    return FelderaClient(TargetSettings(url=url, **fields), sleep=FakeSleep(), retries=0)  # type: ignore[arg-type]


async def test_tls_server_is_verified_with_the_configured_ca_file(
    tls_feldera: ScriptedFeldera, tls_files: tuple[Path, Path]
) -> None:
    async with https_client(tls_feldera, ca_file=tls_files[0]) as client:
        assert [p.name for p in await client.list_pipelines()] == ["p"]


async def test_tls_server_with_an_unknown_ca_is_refused(tls_feldera: ScriptedFeldera) -> None:
    async with https_client(tls_feldera) as client:
        with pytest.raises(ConnectionFailed):
            await client.list_pipelines()


async def test_tls_verification_can_be_switched_off(tls_feldera: ScriptedFeldera) -> None:
    async with https_client(tls_feldera, tls_verify=False) as client:
        assert [p.name for p in await client.list_pipelines()] == ["p"]
