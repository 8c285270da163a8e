"""Exporter settings: a YAML file validated by pydantic, then overridden by environment and flags.

Precedence, lowest first: built-in defaults, the YAML file, environment (``FELDERA_URL``, ``FELDERA_API_KEY``),
command-line flags. Every problem is reported as ``location: message`` (e.g. ``targets[0].timeout: ...``) by
:class:`ConfigError`; the CLI prints those lines and exits non-zero, without a traceback.

API keys come from ``api_key_file`` or ``FELDERA_API_KEY``, never from the YAML itself (``api_key:`` there is an
error pointing to those two). A key must be printable ASCII without spaces (it goes into an HTTP header); one with a
line break or other characters is rejected without being shown. Keys are held as :class:`pydantic.SecretStr`
(never in ``repr``); the process that runs registers them with :mod:`exporter.logsafe` when it sets up logging
(:meth:`Settings.api_keys`), so they never appear in logs or error messages. Validating (``check-config``, a test)
registers nothing.

Every problem is found in one pass (collect, then report): duplicate YAML keys, every bad field, duplicate target
names, unknown schedule targets, every bad label and API key problems all come in the same :class:`ConfigError`.
A value that came from an environment variable or a flag is reported with its source
(``targets[0].url (from FELDERA_URL): invalid URL ...``). With ``deep=True`` (``run`` and ``check-config``) the
files ``run`` would use are checked too: the web config is loaded (certificates included) and the reset-watch
state file's directory must exist and be writable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter import validation, yamlerror
from exporter.flags import FELDERA_API_KEY, FELDERA_URL, OPTIONS, Option, Overrides

DEFAULT_PORT = 10027
DEFAULT_TARGET = "default"
API_KEY_ENV = FELDERA_API_KEY.env
URL_ENV = FELDERA_URL.env

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_HEADER_SAFE_KEY = re.compile(r"^[\x21-\x7e]+$")
"""What an API key may contain: printable ASCII without spaces (it is sent as ``Authorization: Bearer <key>``)."""
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
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
            seconds = float(text)
        elif text and _DURATION_PART.sub("", text) == "" and _units_descend(_DURATION_PART.findall(text)):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
        else:
            raise ValueError(f"invalid duration {value!r}: expected a number of seconds or e.g. 15s, 2m, 1h, 500ms")
    else:
        raise ValueError("expected a duration such as 15s, 2m or 1h")
    if not seconds > 0:
        raise ValueError(f"duration must be greater than 0, got {value!r}")
    return seconds


def _units_descend(parts: list[tuple[str, str]]) -> bool:
    """Each unit once, largest first (``1h30m``, not ``30m1h`` or ``1h1h``), as Prometheus writes durations."""
    sizes = [_UNIT_SECONDS[unit] for _, unit in parts]
    return all(a > b for a, b in pairwise(sizes))


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _deep(info: ValidationInfo) -> bool:
    """Whether validation also checks the files ``run`` would use (``build_settings(deep=True)``)."""
    return bool(info.context and info.context.get("deep"))


def parse_listen_address(value: str) -> tuple[str, int]:
    """``":10027"`` -> ("", 10027) (all interfaces); ``"127.0.0.1:9"``; ``"[::1]:9"``."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()):
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
    enable_reset_watch_api: bool = False
    """Allow POST/DELETE on ``/api/v1/reset-watches`` (GET is always served); like Prometheus'
    ``--web.enable-admin-api``: off by default, since anyone who reaches the port could otherwise make the
    exporter poll Feldera with its API key."""
    max_connections: Annotated[int, Field(ge=1, le=65_536)] = 128
    """Open connections to the endpoint; at the cap the one idle the longest is closed for a new one."""
    max_connections_per_address: Annotated[int, Field(ge=1, le=65_536)] = 32
    """Open connections of one remote address (its share of ``max_connections``)."""

    @model_validator(mode="after")
    def _check_share(self) -> WebSettings:
        if self.max_connections_per_address > self.max_connections:
            raise ValueError(
                f"max_connections_per_address ({self.max_connections_per_address}) is more than max_connections "
                f"({self.max_connections})"
            )
        return self

    @field_validator("listen_address")
    @classmethod
    def _check_listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("config_file")
    @classmethod
    def _check_config_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and _deep(info):
            from exporter.webconfig import WebConfigError, load_web_config

            try:
                load_web_config(value).ssl_context()
            except WebConfigError as exc:
                raise ValueError("\n".join(str(exc).splitlines())) from None
        return value

    @property
    def host(self) -> str:
        return parse_listen_address(self.listen_address)[0]

    @property
    def port(self) -> int:
        return parse_listen_address(self.listen_address)[1]


class PollSettings(_Section):
    interval: Duration = 15.0
    """Time between the starts of two cycles of a target (each target on its own)."""
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 32
    """Maximum in-flight API requests per target."""
    cycle_deadline: Duration = 30.0
    """Longest a target's cycle may take: past it, what has not been answered is left out (the target down if the
    pipeline list was not), and the target's part is published as it is."""
    recheck_interval: Annotated[Duration, Field(ge=1.0)] = 300.0
    """The oldest a reused ``checkpoint_status`` or ``checkpoint/sync_status`` answer gets on an Enterprise target:
    they are asked again when their answer can have changed, and at least this often (docs/feldera-api.md, "What
    changes what"); the open-source edition refuses the requests that would change them."""


class TargetSettings(_Section):
    name: Annotated[str, Field(min_length=1, max_length=128)] = DEFAULT_TARGET
    url: str = "http://localhost:8080"
    api_key_file: Path | None = None
    api_key: SecretStr | None = None
    """Filled from ``api_key_file`` or ``FELDERA_API_KEY`` by :func:`build_settings`; never read from the YAML."""
    ca_file: Path | None = None
    tls_verify: bool = True
    timeout: Duration = 10.0
    """Deadline of one request: connecting, sending, and reading the whole answer."""
    max_response_size: Annotated[ByteSize, Field(gt=0)] = ByteSize(24 * 1024 * 1024)
    """Most bytes of answers (decoded) the target's requests in flight hold at once, one answer as much as all
    (``24MiB``, ``64MB``, or bytes); an answer past it is an invalid response. Sized for the 256Mi pod
    (docs/sizing.md)."""
    max_pipelines: Annotated[int, Field(ge=1)] = 10_000
    """Most pipelines the target may list; a longer list (or one too large to hold at most this many) is refused
    before its entries are kept: the target is over limit."""
    max_connectors: Annotated[int, Field(ge=1)] = 40_000
    """Most connectors (inputs and outputs of the pipelines' stats) kept per target and cycle; past it, the stats of
    the remaining pipelines are not asked: the target is over limit."""
    keepalive_timeout: Duration = 15.0
    """How long an idle kept-alive connection is kept for reuse before the client closes it."""
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
        problems = []
        for key in value:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                problems.append(f"{key!r} is not a valid Prometheus label name")
            elif key in RESERVED_LABELS:
                problems.append(f"label {key!r} is reserved by the exporter")
        if problems:
            raise ValueError("\n".join(problems))
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
    resources: bool = True
    checkpoints: bool = True
    checkpoint_sync: bool = True
    connectors: bool = True
    connector_counters: bool = True
    connector_errors: bool = False
    cluster: bool = True
    server: bool = True

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

    @field_validator("state_file")
    @classmethod
    def _check_state_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None or not _deep(info):
            return value
        directory = value.parent
        if not directory.is_dir():
            raise ValueError(f"directory {directory} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ValueError(f"directory {directory} is not writable (the state file is replaced atomically there)")
        if value.exists() and not value.is_file():
            raise ValueError(f"{value} exists and is not a regular file")
        return value


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
    """Target names are unique and schedules name known targets: :func:`build_settings` checks both."""

    _notes: tuple[str, ...] = PrivateAttr(default=())

    @property
    def notes(self) -> tuple[str, ...]:
        """Warnings about what was given but not used (an environment variable the file's targets leave out);
        ``check-config`` prints them, ``run`` logs them."""
        return self._notes

    def api_keys(self) -> tuple[str, ...]:
        """The targets' API keys, for the running process's log sanitiser (:func:`exporter.console.setup_logging`)."""
        return tuple(target.api_key.get_secret_value() for target in self.targets if target.api_key is not None)


class ConfigError(Exception):
    """Invalid configuration; ``problems`` are ``location: message`` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


def format_validation_error(error: ValidationError, sources: Mapping[str, str] | None = None) -> list[str]:
    """``location: message`` per problem (a message of several lines is several problems at one location);
    a location in ``sources`` (a value from the environment or a flag) names that source."""
    lines = []
    for problem in validation.problems(error):
        message = {"extra_forbidden": "unknown key", "missing": "required key missing"}.get(
            problem.kind, problem.message
        )
        location = problem.location or "(top level)"
        source = (sources or {}).get(location)
        if source is not None:
            location = f"{location} (from {source})"
        lines += [f"{location}: {line}" for line in message.splitlines()]
    return lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that records every mapping key given twice (YAML forbids it; PyYAML keeps the last)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, int, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<" merges defaults that explicit keys may override
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) or key is None:
                if key in seen:
                    mark = key_node.start_mark
                    self.duplicates.append((mark.line + 1, mark.column + 1, f"duplicate key {key!r}"))
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unreadable(exc: OSError | UnicodeDecodeError) -> str:
    reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
    return f"cannot read: {reason or exc}"


def read_yaml(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The top-level mapping of a YAML file and the problems that do not stop reading it (duplicate keys)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: {_unreadable(exc)}"]) from None
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError([yamlerror.describe(path, exc)]) from None
    finally:
        loader.dispose()
    duplicates = [f"{path}:{line}:{column}: {problem}" for line, column, problem in sorted(loader.duplicates)]
    if data is None:
        return {}, duplicates
    if not isinstance(data, dict):
        raise ConfigError([*duplicates, f"{path}: expected a mapping of settings at the top level"])
    return data, duplicates


@dataclass(slots=True)
class _Merged:
    """The raw settings after environment and flags, where those values came from, and what was wrong."""

    raw: dict[str, Any]
    sources: dict[str, str]
    problems: list[str]
    notes: list[str] = field(default_factory=list)
    """What was given but not used (a warning, not a problem): :attr:`Settings.notes`."""


def _given(option: Option, overrides: Overrides, env: Mapping[str, str]) -> tuple[object, str] | None:
    """The value of ``option`` and where it came from: its flag, else its (non-empty) environment variable."""
    if option.flag is not None and overrides.get(option.flag) is not None:
        return overrides[option.flag], option.flag
    if option.env is not None and env.get(option.env):
        return env[option.env], option.env
    return None


def _apply_overrides(raw: dict[str, Any], overrides: Overrides, env: Mapping[str, str]) -> _Merged:
    """Every declared option given by flag or environment (:data:`exporter.flags.OPTIONS`), over the file's
    values; the API key is not among them (:func:`_api_keys` reads it)."""
    unknown = set(overrides) - {option.flag for option in OPTIONS if option.key is not None}
    if unknown:
        raise ValueError(f"not flags of run: {', '.join(sorted(unknown))}")
    merged = _Merged(dict(raw), {}, [])
    for option in OPTIONS:
        path = option.key  # None: --config (the file itself) and the API key (read by _api_keys)
        given = _given(option, overrides, env) if path is not None else None
        if path is None or given is None:
            continue
        value, source = given
        if option is FELDERA_URL:
            _set_default_target_url(merged, value, source)
            continue
        *sections, key = path.split(".")
        mapping = merged.raw
        for section in sections:
            current = mapping.get(section)
            mapping[section] = dict(current) if isinstance(current, dict) else {}
            mapping = mapping[section]
        mapping[key] = value
        merged.sources[path] = source
    return merged


def _set_default_target_url(merged: _Merged, url: object, source: str) -> None:
    """``url`` for the target named ``default``, which is created when the file lists no targets."""
    raw = merged.raw
    targets = raw.get("targets") or []
    if not isinstance(targets, list):
        merged.problems.append("targets: expected a list")
        targets = []
    named = [t for t in targets if isinstance(t, dict) and t.get("name", DEFAULT_TARGET) == DEFAULT_TARGET]
    if targets and not named:
        names = ", ".join(str(t.get("name")) for t in targets if isinstance(t, dict))
        if source == URL_ENV:  # exported for something else, perhaps: the file's targets stand
            merged.notes.append(
                f"{URL_ENV} is set but not used: it sets the URL of the target named {DEFAULT_TARGET!r}, and the "
                f"config file's targets are {names}"
            )
        else:
            merged.problems.append(
                f"{source}: sets the URL of the target named {DEFAULT_TARGET!r}, but the config file's targets are "
                f"{names}: name one of them {DEFAULT_TARGET!r}, or leave {source} out"
            )
    elif named:
        raw["targets"] = [{**t, "url": url} if t in named else t for t in targets]
        merged.sources.update({f"targets[{i}].url": source for i, t in enumerate(targets) if t in named})
    else:
        raw["targets"] = [{"name": DEFAULT_TARGET, "url": url}]
        merged.sources["targets[0].url"] = source


def _entries(raw: Mapping[str, Any], *keys: str) -> list[tuple[int, dict[str, Any]]]:
    """``(index, mapping)`` of the list at ``raw[keys[0]][keys[1]]...``, skipping what is not a mapping (the model
    reports those)."""
    value: Any = raw
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return [(i, entry) for i, entry in enumerate(value) if isinstance(entry, dict)] if isinstance(value, list) else []


def _targets(raw: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The targets as :func:`_entries` gives them; no ``targets`` key means the one default target."""
    return _entries(raw, "targets") if raw.get("targets") is not None else [(0, {})]


def _cross_checks(raw: Mapping[str, Any]) -> list[str]:
    """What spans fields: API keys written into the YAML, duplicate target names, unknown schedule targets.

    On the raw mapping, so these are found in the same pass as every field problem."""
    problems = []
    targets = _targets(raw)
    for i, target in targets:
        if "api_key" in target:
            problems.append(
                f"targets[{i}].api_key: API keys are not read from the config file: put the key in a file named by "
                f"api_key_file, or in the {API_KEY_ENV} environment variable"
            )
    names = [str(t.get("name", DEFAULT_TARGET)) for _, t in targets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"targets: duplicate target name(s) {', '.join(duplicates)}")
    for i, schedule in _entries(raw, "checkpoint_sync", "schedules"):
        named = schedule.get("target")
        if named is not None and named not in names:
            problems.append(f"checkpoint_sync.schedules[{i}].target: unknown target {named!r}")
    return problems


def check_api_key(key: str) -> str | None:
    """Why ``key`` cannot be sent in an ``Authorization`` header, or ``None``; never quotes the key."""
    if not key:
        return "the API key is empty"
    if not _HEADER_SAFE_KEY.match(key):
        what = "a line break" if "\n" in key or "\r" in key else "a space, control or non-ASCII character"
        return f"the API key contains {what}; only printable ASCII without spaces is allowed (the key is not shown)"
    return None


def _api_keys(raw: Mapping[str, Any], env: Mapping[str, str]) -> tuple[dict[int, SecretStr], list[str]]:
    """The key of each target by index: its ``api_key_file``, else (first target only) ``FELDERA_API_KEY``."""
    keys: dict[int, SecretStr] = {}
    problems: list[str] = []
    targets = _targets(raw)
    for i, target in targets:
        file, where = target.get("api_key_file"), f"targets[{i}].api_key_file"
        if isinstance(file, str) and Path(file).is_file():  # a missing file is the model's problem to report
            try:
                text = Path(file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{where}: {_unreadable(exc)}")
                continue
            if not text:
                problems.append(f"{where}: file is empty")
                continue
        elif file is None and i == 0 and API_KEY_ENV is not None and env.get(API_KEY_ENV, "").strip():
            text, where = env[API_KEY_ENV].strip(), API_KEY_ENV
        else:
            continue
        problem = check_api_key(text)
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        keys[i] = SecretStr(text)
    return keys, problems


def build_settings(
    raw: Mapping[str, Any],
    *,
    overrides: Overrides | None = None,
    env: Mapping[str, str] | None = None,
    deep: bool = False,
) -> Settings:
    """Validate a raw mapping (from YAML), applying ``overrides`` and ``env`` first; every problem at once.

    ``deep`` also checks the files ``run`` would use (web config, state file directory)."""
    env = os.environ if env is None else env
    merged = _apply_overrides(dict(raw), overrides or {}, env)
    problems = merged.problems + _cross_checks(merged.raw)
    keys, key_problems = _api_keys(merged.raw, env)
    settings = None
    try:
        settings = Settings.model_validate(merged.raw, context={"deep": deep})
    except ValidationError as exc:
        problems += format_validation_error(exc, merged.sources)
    problems += key_problems
    if problems or settings is None:
        raise ConfigError(problems)
    targets = [t.model_copy(update={"api_key": keys.get(i)}) for i, t in enumerate(settings.targets)]
    settings = settings.model_copy(update={"targets": targets})
    settings._notes = tuple(merged.notes)
    return settings


def load_settings(
    path: str | os.PathLike[str] | None,
    *,
    overrides: Overrides | None = None,
    env: Mapping[str, str] | None = None,
    deep: bool = False,
) -> Settings:
    """Load and validate the YAML file at ``path`` (``None`` = defaults only), then env and flag overrides."""
    raw, duplicates = read_yaml(Path(path)) if path is not None else ({}, [])
    try:
        settings = build_settings(raw, overrides=overrides, env=env, deep=deep)
    except ConfigError as exc:
        raise ConfigError([*duplicates, *exc.problems]) from None
    if duplicates:
        raise ConfigError(duplicates)
    return settings
