"""What the commands write for a person: log set-up on stderr and configuration problems, one per line.

Shared by the commands in :mod:`exporter.cli` and the demo (:mod:`exporter.simulator.demo`), so neither imports
the other.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from exporter import logsafe
from exporter.config import ConfigError, Settings
from exporter.logsafe import SafeFormatter
from exporter.webconfig import WebConfigError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def print_config_error(error: ConfigError) -> None:
    print("configuration error:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


def print_web_config_error(settings: Settings, error: WebConfigError) -> None:
    print(f"web config error ({settings.web.config_file}):", file=sys.stderr)
    for problem in str(error).splitlines():
        print(f"  {problem}", file=sys.stderr)


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Log to stderr; every line, tracebacks (``exc_info``) included, is sanitised like every other text from
    outside (logsafe), which redacts ``secrets`` (the configured API keys, :meth:`Settings.api_keys`) from now on."""
    for secret in secrets:
        logsafe.add_secret(secret)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
