"""Exporter settings: a YAML file validated by pydantic, then overridden by environment and flags.

Precedence, lowest first: built-in defaults, the YAML file, environment (``FELDERA_URL``, ``FELDERA_API_KEY``),
command-line flags. Every problem is reported as ``location: message`` (e.g. ``targets[0].timeout: ...``) by
:class:`ConfigError`; the CLI prints those lines and exits non-zero, without a traceback.

API keys are held as :class:`pydantic.SecretStr`: they never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_PORT = 10027
DEFAULT_TARGET = "default"
API_KEY_ENV = "FELDERA_API_KEY"
URL_ENV = "FELDERA_URL"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = frozenset(
    {
        "target",
        "pipeline_name",
        "pipeline_id",
        "platform_version",
        "status",
        "error_code",
        "endpoint",
        "table",
        "view",
        "connector",
        "service",
        "version",
        "python_version",
        "result",
        "code",
        "le",
        "watch",
        "shard",
        "total_shards",
        "instance",
        "job",
    }
)


def parse_duration(value: object) -> float:
    """``15`` / ``2.5`` (seconds), ``"15s"``, ``"2m"``, ``"1h30m"``, ``"500ms"`` -> seconds (> 0).

    >>> parse_duration("1m30s")
    90.0
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 15s, 2m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and _DURATION_PART.sub("", text) == "":
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
        else:
            raise ValueError(f"invalid duration {value!r}: expected a number of seconds or e.g. 15s, 2m, 1h, 500ms")
    else:
        raise ValueError("expected a duration such as 15s, 2m or 1h")
    if not seconds > 0:
        raise ValueError(f"duration must be greater than 0, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_listen_address(value: str) -> tuple[str, int]:
    """``":10027"`` -> ("", 10027) (all interfaces); ``"127.0.0.1:9"``; ``"[::1]:9"``."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"invalid listen address {value!r}: expected [host]:port, e.g. :{DEFAULT_PORT}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"invalid listen address {value!r}: port must be 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


class WebSettings(_Section):
    listen_address: str = f":{DEFAULT_PORT}"
    """``[host]:port`` of the exporter's HTTP endpoint; an empty host listens on all interfaces."""
    config_file: Path | None = None
    """Exporter-toolkit web config (TLS, basic auth)."""

    @field_validator("listen_address")
    @classmethod
    def _check_listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @property
    def host(self) -> str:
        return parse_listen_address(self.listen_address)[0]

    @property
    def port(self) -> int:
        return parse_listen_address(self.listen_address)[1]


class PollSettings(_Section):
    interval: Duration = 15.0
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 32
    """Maximum in-flight API requests per target."""


class TargetSettings(_Section):
    name: Annotated[str, Field(min_length=1, max_length=128)] = DEFAULT_TARGET
    url: str = "http://localhost:8080"
    api_key_file: Path | None = None
    api_key: SecretStr | None = None
    """Filled from ``api_key_file`` or ``FELDERA_API_KEY`` by :func:`load_settings`; prefer those over the file."""
    ca_file: Path | None = None
    tls_verify: bool = True
    timeout: Duration = 10.0
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid URL {value!r}: expected http(s)://host[:port][/path]")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not supported: use api_key_file or FELDERA_API_KEY")
        if parts.query or parts.fragment:
            raise ValueError(f"invalid URL {value!r}: no query or fragment allowed")
        return value.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a valid Prometheus label name")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is reserved by the exporter")
        return value

    @field_validator("ca_file", "api_key_file")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @property
    def label_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.labels.items()))


class PipelineFilter(_Section):
    include: list[str] = Field(default_factory=lambda: ["*"])
    """fnmatch globs on the pipeline name."""
    exclude: list[str] = Field(default_factory=list)


class CollectorSettings(_Section):
    pipelines: bool = True
    checkpoints: bool = True
    checkpoint_sync: bool = True
    connectors: bool = True
    connector_counters: bool = True
    connector_errors: bool = False
    cluster: bool = True

    def disabled(self) -> frozenset[str]:
        return frozenset(name for name, on in self.model_dump().items() if not on)


def _regex_list(value: object) -> object:
    """A comma-separated string (as the flags take it) -> list; a list stays a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


RegexList = Annotated[list[str], BeforeValidator(_regex_list)]


class MetricsSettings(_Section):
    """Which metric families are emitted, by regular expression on the family name (kube-state-metrics'
    ``--metric-allowlist``/``--metric-denylist``): fully anchored, matched against the names in docs/metrics.md
    (counters with ``_total``). At most one of the two lists may be set; ``feldera_up`` is always emitted."""

    allowlist: RegexList = Field(default_factory=list)
    denylist: RegexList = Field(default_factory=list)

    @field_validator("allowlist", "denylist")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check_exclusive(self) -> MetricsSettings:
        if self.allowlist and self.denylist:
            raise ValueError("set either allowlist or denylist, not both")
        return self

    def allows(self, name: str) -> bool:
        """Whether the family ``name`` passes the lists (``feldera_up`` always does)."""
        if name == "feldera_up":
            return True
        if self.allowlist:
            return any(re.fullmatch(pattern, name) for pattern in self.allowlist)
        return not any(re.fullmatch(pattern, name) for pattern in self.denylist)


class SyncSchedule(_Section):
    pipelines: Annotated[str, Field(min_length=1)]
    """fnmatch glob on the pipeline name."""
    every: Duration
    target: str | None = None
    """Target name; ``None`` = every target."""


class CheckpointSyncSettings(_Section):
    schedules: list[SyncSchedule] = Field(default_factory=list)


class ResetWatchSettings(_Section):
    state_file: Path | None = None
    keep_completed: Duration = 3600.0


class ShardingSettings(_Section):
    shard: Annotated[int, Field(ge=0)] = 0
    total_shards: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _check_shard(self) -> ShardingSettings:
        if self.shard >= self.total_shards:
            raise ValueError(f"shard must be below total_shards ({self.shard} >= {self.total_shards})")
        return self


LogLevel = Literal["debug", "info", "warning", "error"]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class Settings(_Section):
    web: WebSettings = Field(default_factory=WebSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    targets: Annotated[list[TargetSettings], Field(min_length=1)] = Field(default_factory=lambda: [TargetSettings()])
    pipelines: PipelineFilter = Field(default_factory=PipelineFilter)
    collectors: CollectorSettings = Field(default_factory=CollectorSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    checkpoint_sync: CheckpointSyncSettings = Field(default_factory=CheckpointSyncSettings)
    reset_watches: ResetWatchSettings = Field(default_factory=ResetWatchSettings)
    sharding: ShardingSettings = Field(default_factory=ShardingSettings)
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = "info"

    @model_validator(mode="after")
    def _check_targets(self) -> Settings:
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"targets: duplicate target name(s) {', '.join(duplicates)}")
        for i, schedule in enumerate(self.checkpoint_sync.schedules):
            if schedule.target is not None and schedule.target not in names:
                raise ValueError(f"checkpoint_sync.schedules[{i}].target: unknown target {schedule.target!r}")
        return self


class ConfigError(Exception):
    """Invalid configuration; ``problems`` are ``location: message`` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Values from command-line flags; ``None`` = not given."""

    feldera_url: str | None = None
    listen_address: str | None = None
    web_config_file: str | None = None
    shard: int | None = None
    total_shards: int | None = None
    log_level: str | None = None
    metric_allowlist: str | None = None
    metric_denylist: str | None = None


def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith(("function-", "constrained-", "json-or-python")) or "[" in part:
            continue
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def format_validation_error(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        location = _location(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key missing"
        if message.startswith("targets: ") or message.startswith("checkpoint_sync."):
            location, _, message = message.partition(": ")
        problems.append(f"{location}: {message}")
    return problems


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{where}: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of settings at the top level"])
    return data


def _override(raw: dict[str, Any], section: str, **values: object) -> None:
    """Set the keys of ``raw[section]`` that have a value (not ``None``), keeping the section's other keys."""
    given = {key: value for key, value in values.items() if value is not None}
    if given:
        raw[section] = {**(raw.get(section) or {}), **given}


def _apply_overrides(raw: dict[str, Any], overrides: Overrides, env: Mapping[str, str]) -> dict[str, Any]:
    raw = dict(raw)
    url, source = overrides.feldera_url, "--feldera-url"
    if url is None and env.get(URL_ENV):
        url, source = env[URL_ENV], URL_ENV
    if url is not None:
        targets = raw.get("targets") or []
        if not isinstance(targets, list):
            raise ConfigError(["targets: expected a list"])
        named = [t for t in targets if isinstance(t, dict) and t.get("name", DEFAULT_TARGET) == DEFAULT_TARGET]
        if targets and not named:
            raise ConfigError([f"{source}: the config file defines targets but none is named {DEFAULT_TARGET!r}"])
        if named:
            raw["targets"] = [{**t, "url": url} if t in named else t for t in targets]
        else:
            raw["targets"] = [{"name": DEFAULT_TARGET, "url": url}]
    _override(raw, "web", listen_address=overrides.listen_address, config_file=overrides.web_config_file)
    _override(raw, "sharding", shard=overrides.shard, total_shards=overrides.total_shards)
    if overrides.log_level is not None:
        raw["log_level"] = overrides.log_level
    _override(raw, "metrics", allowlist=overrides.metric_allowlist, denylist=overrides.metric_denylist)
    return raw


def _with_api_keys(settings: Settings, env: Mapping[str, str]) -> Settings:
    """Read ``api_key_file`` of each target; ``FELDERA_API_KEY`` is the key of the first target without one."""
    problems: list[str] = []
    targets = []
    for i, target in enumerate(settings.targets):
        key = target.api_key
        if target.api_key_file is not None:
            if key is not None:
                problems.append(f"targets[{i}].api_key_file: set either api_key or api_key_file, not both")
            try:
                text = target.api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"targets[{i}].api_key_file: cannot read: {exc.strerror or exc}")
            else:
                if not text:
                    problems.append(f"targets[{i}].api_key_file: file is empty")
                key = SecretStr(text) if text else None
        elif key is None and i == 0 and env.get(API_KEY_ENV):
            key = SecretStr(env[API_KEY_ENV].strip())
        targets.append(target.model_copy(update={"api_key": key}))
    if problems:
        raise ConfigError(problems)
    return settings.model_copy(update={"targets": targets})


def build_settings(
    raw: Mapping[str, Any], *, overrides: Overrides | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Validate a raw mapping (from YAML), applying ``overrides`` and ``env`` first."""
    env = os.environ if env is None else env
    merged = _apply_overrides(dict(raw), overrides or Overrides(), env)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    return _with_api_keys(settings, env)


def load_settings(
    path: str | os.PathLike[str] | None,
    *,
    overrides: Overrides | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Load and validate the YAML file at ``path`` (``None`` = defaults only), then env and flag overrides."""
    raw = read_yaml(Path(path)) if path is not None else {}
    return build_settings(raw, overrides=overrides, env=env)
