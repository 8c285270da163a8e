"""Config validation: every bad key/value is named in a ``location: message`` line; env and flags override."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.config import ConfigError, build_settings, load_settings, parse_duration

REPO = Path(__file__).resolve().parent.parent
WriteConfig = Callable[..., Path]


def problems_of(raw: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings(raw, env=kwargs.pop("env", {}), **kwargs)
    return list(caught.value.problems)


def test_defaults_poll_localhost_every_15s_and_listen_on_10027() -> None:
    settings = build_settings({}, env={})
    assert [(t.name, t.url) for t in settings.targets] == [("default", "http://localhost:8080")]
    assert settings.poll.interval == 15.0
    assert settings.web.port == 10027
    assert settings.web.host == ""
    assert settings.collectors.disabled() == {"connector_errors"}


def test_example_config_validates() -> None:
    settings = load_settings(REPO / "config.example.yaml", env={})
    assert settings.targets
    assert settings.poll.interval > 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (15, 15.0),
        (2.5, 2.5),
        ("15", 15.0),
        ("15s", 15.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h1s500ms", 3601.5),
    ],
)
def test_durations_accept_seconds_and_units(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration("500ms") == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"poll": {"interval": "soon"}}, "poll.interval: invalid duration 'soon'"),
        ({"poll": {"interval": 0}}, "poll.interval: duration must be greater than 0"),
        ({"poll": {"concurrency": 0}}, "poll.concurrency: "),
        ({"poll": {"intervall": "15s"}}, "poll.intervall: unknown key"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"web": {"listen_address": "10027"}}, "web.listen_address: invalid listen address"),
        ({"web": {"listen_address": ":99999"}}, "web.listen_address: invalid listen address"),
        ({"web": {"listen_address": ":\u00b2"}}, "web.listen_address: invalid listen address"),  # ASCII digits only
        ({"web": {"max_connections": 0}}, "web.max_connections: "),
        (
            {"web": {"max_connections": 8, "max_connections_per_address": 9}},
            "web: max_connections_per_address (9) is more than max_connections (8)",
        ),
        ({"poll": {"interval": "\u0661\u0665s"}}, "poll.interval: invalid duration"),
        ({"targets": []}, "targets: "),
        ({"targets": [{"url": "ftp://x"}]}, "targets[0].url: invalid URL"),
        ({"targets": [{"url": "http://user:pw@x"}]}, "targets[0].url: credentials in the URL are not supported"),
        ({"targets": [{"timeout": "-1s"}]}, "targets[0].timeout: invalid duration"),
        ({"targets": [{"timeout": "1h1h"}]}, "targets[0].timeout: invalid duration '1h1h'"),
        ({"targets": [{"timeout": "30s1m"}]}, "targets[0].timeout: invalid duration '30s1m'"),
        ({"targets": [{"labels": {"target": "x"}}]}, "targets[0].labels: label 'target' is reserved"),
        ({"targets": [{"labels": {"1bad": "x"}}]}, "targets[0].labels: '1bad' is not a valid Prometheus label"),
        ({"targets": [{"ca_file": "/nonexistent/ca.pem"}]}, "targets[0].ca_file: file not found"),
        ({"targets": [{"name": "a"}, {"name": "a"}]}, "targets: duplicate target name(s) a"),
        ({"collectors": {"connectors": "maybe"}}, "collectors.connectors: "),
        ({"collectors": {"everything": True}}, "collectors.everything: unknown key"),
        ({"sharding": {"shard": 2, "total_shards": 2}}, "sharding: shard must be below total_shards"),
        ({"log_level": "loud"}, "log_level: "),
        ({"checkpoint_sync": {"schedules": [{"pipelines": "*"}]}}, "checkpoint_sync.schedules[0].every: required"),
        (
            {"checkpoint_sync": {"schedules": [{"pipelines": "*", "every": "1h", "target": "nope"}]}},
            "checkpoint_sync.schedules[0].target: unknown target 'nope'",
        ),
        ({"reset_watches": {"keep_completed": "forever"}}, "reset_watches.keep_completed: invalid duration"),
    ],
)
def test_invalid_value_is_reported_with_its_key(raw: dict[str, Any], expected: str) -> None:
    problems = problems_of(raw)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of({"poll": {"interval": "x", "concurrency": -1}, "nope": 1})
    assert len(problems) == 3


def test_flag_overrides_file_and_env(write_config: WriteConfig) -> None:
    path = write_config({"web": {"listen_address": ":1"}, "targets": [{"url": "http://file:1", "timeout": "3s"}]})
    settings = load_settings(
        path,
        overrides={
            "--feldera-url": "http://flag:2",
            "--web.listen-address": "127.0.0.1:3",
            "--shard": 1,
            "--total-shards": "3",
        },
        env={"FELDERA_URL": "http://env:4"},
    )
    assert settings.targets[0].url == "http://flag:2"
    assert settings.targets[0].timeout == 3.0
    assert settings.web.listen_address == "127.0.0.1:3"
    assert (settings.sharding.shard, settings.sharding.total_shards) == (1, 3)


def test_feldera_url_env_makes_the_default_target() -> None:
    settings = build_settings({}, env={"FELDERA_URL": "https://feldera.example:8080/"})
    assert [(t.name, t.url) for t in settings.targets] == [("default", "https://feldera.example:8080")]


def test_feldera_url_flag_needs_a_default_target_when_the_file_defines_targets() -> None:
    raw = {"targets": [{"name": "prod", "url": "http://p:1"}, {"name": "test", "url": "http://t:1"}]}
    problems = problems_of(raw, overrides={"--feldera-url": "http://x:1"})
    assert problems == [
        "--feldera-url: sets the URL of the target named 'default', but the config file's targets are prod, test: "
        "name one of them 'default', or leave --feldera-url out"
    ]


def test_an_exported_feldera_url_leaves_a_file_without_default_target_alone_with_a_note() -> None:
    raw = {"targets": [{"name": "prod", "url": "http://p:1"}, {"name": "test", "url": "http://t:1"}]}
    settings = build_settings(raw, env={"FELDERA_URL": "http://x:1"})
    assert [(t.name, t.url) for t in settings.targets] == [("prod", "http://p:1"), ("test", "http://t:1")]
    assert settings.notes == (
        "FELDERA_URL is set but not used: it sets the URL of the target named 'default', and the config file's "
        "targets are prod, test",
    )
    assert build_settings(raw, env={}).notes == ()
    assert build_settings({"targets": [{"url": "http://d:1"}]}, env={"FELDERA_URL": "http://x:1"}).targets[0].url == (
        "http://x:1"
    )


def test_check_config_and_run_say_when_feldera_url_is_not_used(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from exporter import cli
    from exporter.config import Settings

    config = tmp_path / "config.yaml"
    config.write_text("targets: [{name: prod, url: 'http://127.0.0.1:9'}]\n", encoding="utf-8")
    monkeypatch.setenv("FELDERA_URL", "http://127.0.0.1:8")
    note = "FELDERA_URL is set but not used: it sets the URL of the target named 'default', and the config file's "
    assert cli.main(["check-config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{config}: OK (1 target(s): prod)\n"
    assert captured.err.splitlines()[0] == f"warning: {note}targets are prod"

    served: list[Settings] = []

    async def serve(settings: Settings, reload: Callable[[], Settings]) -> None:  # returns at once: no server
        served.append(settings)

    monkeypatch.setattr(cli, "serve", serve)
    monkeypatch.setattr(cli, "setup_logging", lambda level, secrets: None)  # caplog keeps the root logger
    assert cli.main(["run", "--config", str(config)]) == 0
    assert [t.name for t in served[0].targets] == ["prod"]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", f"{note}targets are prod")]


def test_several_targets_keep_their_own_url_and_labels() -> None:
    settings = build_settings(
        {
            "targets": [
                {"name": "eu", "url": "http://eu:8080", "labels": {"region": "eu"}},
                {"name": "us", "url": "http://us:8080", "labels": {"region": "us"}},
            ]
        },
        env={},
    )
    assert [(t.name, t.label_pairs) for t in settings.targets] == [
        ("eu", (("region", "eu"),)),
        ("us", (("region", "us"),)),
    ]


def test_api_key_from_env_applies_to_the_first_target_and_is_never_shown() -> None:
    settings = build_settings(
        {"targets": [{"name": "a", "url": "http://a:1"}, {"name": "b", "url": "http://b:1"}]},
        env={"FELDERA_API_KEY": "apikey:topsecret"},
    )
    first, second = settings.targets
    assert first.api_key is not None and first.api_key.get_secret_value() == "apikey:topsecret"
    assert second.api_key is None
    assert "topsecret" not in repr(settings)
    assert "topsecret" not in str(settings.model_dump())
    assert "topsecret" not in settings.model_dump_json()


def test_api_key_file_is_read_and_stripped(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("apikey:fromfile\n")
    settings = build_settings({"targets": [{"api_key_file": str(key_file)}]}, env={"FELDERA_API_KEY": "env"})
    key = settings.targets[0].api_key
    assert key is not None and key.get_secret_value() == "apikey:fromfile"


def test_empty_api_key_file_is_an_error(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    assert problems_of({"targets": [{"api_key_file": str(key_file)}]}) == ["targets[0].api_key_file: file is empty"]


def test_missing_api_key_file_is_named() -> None:
    problems = problems_of({"targets": [{"api_key_file": "/nonexistent/key"}]})
    assert problems == ["targets[0].api_key_file: file not found: /nonexistent/key"]


def test_yaml_syntax_error_names_file_and_line(write_config: WriteConfig) -> None:
    path = write_config("poll:\n  interval: [15s\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}:3:")


def test_top_level_must_be_a_mapping(write_config: WriteConfig) -> None:
    path = write_config("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(path, env={})


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", env={})


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_check_config_exits_zero_for_a_valid_file(write_config: WriteConfig) -> None:
    path = write_config({"targets": [{"name": "prod", "url": "http://feldera:8080"}]})
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_exits_non_zero_naming_the_key_without_traceback(write_config: WriteConfig) -> None:
    path = write_config({"poll": {"interval": "often"}, "targets": [{"url": "http://x", "colour": "red"}]})
    result = run_cli("check-config", str(path))
    assert result.returncode == 1
    assert "poll.interval: invalid duration 'often'" in result.stderr
    assert "targets[0].colour: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_an_invalid_config_exits_2_without_traceback(write_config: WriteConfig) -> None:
    path = write_config({"web": {"listen_address": "nowhere"}})
    result = run_cli("--config", str(path))
    assert result.returncode == 2
    assert "web.listen_address: invalid listen address" in result.stderr
    assert "Traceback" not in result.stderr


# ---- one pass, sources, API keys, duplicate keys, the files run uses ------------------------------------------


def test_cross_field_problems_come_with_field_problems_in_one_pass() -> None:
    problems = problems_of(
        {
            "poll": {"interval": "often"},
            "targets": [
                {"name": "a", "url": "ftp://x", "labels": {"1bad": "x", "target": "y", "ok": "z"}},
                {"name": "a"},
            ],
            "checkpoint_sync": {"schedules": [{"pipelines": "*", "every": "1h", "target": "nope"}]},
        }
    )
    assert sorted(problems) == sorted(
        [
            "poll.interval: invalid duration 'often': expected a number of seconds or e.g. 15s, 2m, 1h, 500ms",
            "targets[0].url: invalid URL 'ftp://x': expected http(s)://host[:port][/path]",
            "targets[0].labels: '1bad' is not a valid Prometheus label name",
            "targets[0].labels: label 'target' is reserved by the exporter",
            "targets: duplicate target name(s) a",
            "checkpoint_sync.schedules[0].target: unknown target 'nope'",
        ]
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"env": {"FELDERA_URL": "garbage"}}, "targets[0].url (from FELDERA_URL): invalid URL 'garbage'"),
        ({"overrides": {"--feldera-url": "garbage"}}, "targets[0].url (from --feldera-url): invalid URL"),
        ({"overrides": {"--web.listen-address": "x"}}, "web.listen_address (from --web.listen-address): invalid"),
        ({"overrides": {"--log-level": "loud"}}, "log_level (from --log-level): "),
    ],
)
def test_a_value_from_the_environment_or_a_flag_names_its_source(kwargs: dict[str, Any], expected: str) -> None:
    problems = problems_of({}, **kwargs)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_api_key_in_the_yaml_is_rejected_with_a_pointer_and_without_the_key() -> None:
    problems = problems_of({"targets": [{"url": "http://x:1", "api_key": "apikey:inline-secret"}]})
    assert problems == [
        "targets[0].api_key: API keys are not read from the config file: put the key in a file named by "
        "api_key_file, or in the FELDERA_API_KEY environment variable"
    ]


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("apikey:SECRET\r\nsecond-line", "a line break"),
        ("apikey:SE CRET", "a space, control or non-ASCII character"),
        ("apikey:SECRÉT", "a space, control or non-ASCII character"),
        ("apikey:SE\x1bCRET", "a space, control or non-ASCII character"),
    ],
)
def test_api_key_that_cannot_be_a_header_is_rejected_without_being_shown(
    tmp_path: Path, content: str, what: str
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(content.encode())
    problems = problems_of({"targets": [{"api_key_file": str(key_file)}]})
    assert problems == [
        f"targets[0].api_key_file: the API key contains {what}; only printable ASCII without spaces is allowed "
        "(the key is not shown)"
    ]
    env_problems = problems_of({}, env={"FELDERA_API_KEY": content})
    assert env_problems == [problems[0].replace("targets[0].api_key_file", "FELDERA_API_KEY")]
    assert not any("SE" in p for p in problems + env_problems)


def test_validation_registers_no_secret_and_the_settings_give_the_keys_to_register(tmp_path: Path) -> None:
    from exporter.logsafe import clean

    key_file = tmp_path / "key"
    key_file.write_text("xk-5c4e0b7a31\n")  # not shaped like apikey:..., so only a registered value would hide it
    settings = build_settings({"targets": [{"api_key_file": str(key_file)}]}, env={"FELDERA_API_KEY": "xk-env-only"})
    assert clean("sent xk-5c4e0b7a31") == "sent xk-5c4e0b7a31"  # the log sanitiser's set is untouched
    assert settings.api_keys() == ("xk-5c4e0b7a31",)
    assert "xk-" not in repr(settings)


def test_duplicate_yaml_keys_are_all_reported_with_the_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "poll:\n  interval: 5s\n  interval: 10s\nlog_level: info\nlog_level: loud\n"
        "defaults: &d {timeout: 2s}\ntargets:\n  - <<: *d\n    timeout: 3s\n    url: http://x:1\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert list(caught.value.problems) == [
        f"{path}:3:3: duplicate key 'interval'",
        f"{path}:5:1: duplicate key 'log_level'",
        "log_level: Input should be 'debug', 'info', 'warning' or 'error'",
        "defaults: unknown key",
    ]


def test_deep_validation_loads_the_web_config_and_checks_the_state_file_directory(tmp_path: Path) -> None:
    bad_web = tmp_path / "web.yml"
    bad_web.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    raw = {
        "web": {"config_file": str(bad_web)},
        "reset_watches": {"state_file": str(tmp_path / "absent" / "watches.json")},
    }
    settings = build_settings(raw, env={})  # not deep: paths are only paths
    assert settings.web.config_file == bad_web
    problems = problems_of(raw, deep=True)
    assert len(problems) == 2, problems
    assert problems[0].startswith("web.config_file: ") and "missing.crt" in problems[0]
    assert problems[1] == f"reset_watches.state_file: directory {tmp_path / 'absent'} does not exist"
    missing = problems_of({"web": {"config_file": str(tmp_path / "nope.yml")}}, deep=True)
    assert len(missing) == 1 and missing[0].startswith(f"web.config_file: {tmp_path / 'nope.yml'}: cannot read")


def test_check_config_reports_what_run_would_refuse(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config(
        {
            "web": {"config_file": str(tmp_path / "nope.yml")},
            "reset_watches": {"state_file": str(tmp_path / "absent" / "watches.json")},
            "targets": [{"name": "a"}, {"name": "a"}],
        }
    )
    result = run_cli("check-config", str(path))
    assert result.returncode == 1
    assert "OK" not in result.stdout
    for expected in ("web.config_file: ", "reset_watches.state_file: directory", "duplicate target name(s) a"):
        assert expected in result.stderr
    assert "Traceback" not in result.stderr
