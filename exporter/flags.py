"""Every setting that can come from outside the config file, declared once (:data:`OPTIONS`): its command-line
flag, its environment variable and the config key it sets.

Made from the declaration: the parsers' arguments (:func:`add_options`, for ``run`` and the demo), the overrides
they give (:func:`overrides_from`), how :func:`exporter.config.build_settings` applies flags and environment
(precedence: file < environment < flag) and names a value's source in a problem (``targets[0].url (from
FELDERA_URL): ...``), and the flag table of docs/configuration.md (``feldera-exporter docs --flags
docs/configuration.md``). A value from a flag is text, checked by the settings' own validation like a value from the
file.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEMO_INTERVAL = "5s"
"""The demo's poll interval unless ``--interval`` or its ``--config`` says otherwise."""


@dataclass(frozen=True, slots=True)
class Option:
    help: str
    """One line for ``--help`` and the flag table."""
    flag: str | None = None
    env: str | None = None
    key: str | None = None
    """The config key it sets (dotted, as problems name it); None for ``--config`` itself."""
    metavar: str | None = None
    switch: bool = False
    """A flag without a value: given, it sets ``true``."""

    @property
    def dest(self) -> str:
        """The flag's attribute on the parsed arguments: ``--web.listen-address`` -> ``web_listen_address``."""
        name = self.flag or self.env or ""
        return name.lstrip("-").replace(".", "_").replace("-", "_").lower()


CONFIG = Option("YAML config file (see config.example.yaml)", flag="--config", metavar="FILE")
FELDERA_URL = Option(
    "URL of the target named default (created when the file has no targets)",
    flag="--feldera-url",
    env="FELDERA_URL",
    key="targets[].url",
    metavar="URL",
)
FELDERA_API_KEY = Option("API key of the first target when it has no api_key_file", env="FELDERA_API_KEY")
LISTEN_ADDRESS = Option(
    "where to serve (default :10027)", flag="--web.listen-address", key="web.listen_address", metavar="[HOST]:PORT"
)
WEB_CONFIG_FILE = Option(
    "exporter-toolkit web config: TLS and basic auth", flag="--web.config.file", key="web.config_file", metavar="FILE"
)
ENABLE_RESET_WATCH_API = Option(
    "allow registering and deleting reset watches over HTTP (POST/DELETE /api/v1/reset-watches)",
    flag="--web.enable-reset-watch-api",
    key="web.enable_reset_watch_api",
    switch=True,
)
SHARD = Option("poll only the pipelines of shard I (0-based)", flag="--shard", key="sharding.shard", metavar="I")
TOTAL_SHARDS = Option("number of shards", flag="--total-shards", key="sharding.total_shards", metavar="N")
METRIC_ALLOWLIST = Option(
    "comma-separated regexes: emit only the metric families whose whole name matches one",
    flag="--metric-allowlist",
    key="metrics.allowlist",
    metavar="RE,RE",
)
METRIC_DENYLIST = Option(
    "comma-separated regexes: do not emit the metric families whose whole name matches one",
    flag="--metric-denylist",
    key="metrics.denylist",
    metavar="RE,RE",
)
LOG_LEVEL = Option("debug, info, warning or error (default info)", flag="--log-level", key="log_level", metavar="LEVEL")

OPTIONS: tuple[Option, ...] = (
    CONFIG,
    FELDERA_URL,
    FELDERA_API_KEY,
    LISTEN_ADDRESS,
    WEB_CONFIG_FILE,
    ENABLE_RESET_WATCH_API,
    SHARD,
    TOTAL_SHARDS,
    METRIC_ALLOWLIST,
    METRIC_DENYLIST,
    LOG_LEVEL,
)
"""Everything ``run`` takes from outside its config file, in the order ``--help`` and the flag table list it."""

Overrides = Mapping[str, object]
"""Values given on the command line by flag (``{"--shard": "1"}``); a flag not given is absent."""


def add_options(
    parser: argparse.ArgumentParser,
    options: Iterable[Option] = OPTIONS,
    *,
    helps: Mapping[Option, str] | None = None,
    defaults: Mapping[Option, str] | None = None,
) -> None:
    """The flags of ``options`` on ``parser`` (an option with an environment variable says so; one with only an
    environment variable is listed after the flags); ``helps`` and ``defaults`` adapt them to a command (the demo)."""
    environment = []
    for option in options:
        if option.flag is None:
            if option.env is not None:
                environment.append(f"{option.env}: {option.help}")
            continue
        help = (helps or {}).get(option, option.help) + (f" (env {option.env})" if option.env else "")
        if option.switch:
            parser.add_argument(option.flag, dest=option.dest, action="store_true", default=None, help=help)
        else:
            default = (defaults or {}).get(option)
            parser.add_argument(option.flag, dest=option.dest, metavar=option.metavar, default=default, help=help)
    if environment:
        parser.epilog = "environment: " + "; ".join(environment)


def overrides_from(args: argparse.Namespace, options: Iterable[Option] = OPTIONS) -> dict[str, object]:
    """The flags given on the command line (``--config`` is the file itself, not an override)."""
    return {
        option.flag: value
        for option in options
        if option.flag is not None
        and option.key is not None
        and (value := getattr(args, option.dest, None)) is not None
    }
