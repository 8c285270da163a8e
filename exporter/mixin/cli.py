"""``feldera-exporter rules``, ``dashboards`` and ``mixin``: what the package carries, written out.

``rules`` prints (or writes) the alert rules generated from the rule config and any ``--override`` files, exactly
what the repository commits as ``prometheus/alerts.yaml`` when there is no override; ``dashboards`` writes the
Grafana dashboards (``grafana/dashboards/*.json`` without an override), scoped by the same config's ``selector``,
``extra_labels`` and ``runbook_base_url``; ``mixin`` writes both from one config into one directory, with the
Alertmanager example, the runbooks and the shipped rule config to start an override from. Every command takes the
same ``--override`` files, so rules and dashboards select the same series. ``--check`` compares instead of writing:
exit status 1 when a file differs, 2 when it cannot be read or a config is refused.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporter.mixin import ALERTMANAGER_EXAMPLE, RUNBOOKS


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rules",
        help="print the alert rules (Prometheus rule file)",
        description="The alert rules, generated from the rule config and any --override files.",
    )
    _override(parser)
    parser.add_argument("--output", type=Path, metavar="FILE", help="write to FILE instead of printing")
    parser.add_argument("--check", action="store_true", help="exit 1 when --output differs from the generated rules")
    parser.set_defaults(func=_rules)

    parser = subparsers.add_parser("dashboards", help="write the Grafana dashboards (JSON) into a directory")
    _override(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file in DIR differs")
    parser.set_defaults(func=_dashboards)

    parser = subparsers.add_parser(
        "mixin",
        help="write rules, dashboards, Alertmanager example, runbooks and rule config into a directory",
        description="Everything the package carries: rules and dashboards from the rule config and any --override "
        "files, the Alertmanager example, the runbooks and the shipped rule config.",
    )
    _override(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    parser.set_defaults(func=_mixin)


def _override(parser: argparse.ArgumentParser) -> None:
    tune = "YAML merged key by key over the rule config (repeatable; see docs/runbooks.md, 'Tuning the rules')"
    parser.add_argument("--override", type=Path, action="append", default=[], metavar="FILE", help=tune)


def _generate(overrides: list[Path]) -> tuple[dict[str, Any], str] | None:
    """The shipped rule config with ``overrides`` merged over it, and the rule file made from it (which checks the
    config whole); None after printing why they cannot be made."""
    from exporter.mixin import rules  # the generators are loaded by these commands only, never by run

    try:
        config = rules.load_config(rules.DEFAULT_CONFIG, tuple(overrides))
        return config, rules.render(config)
    except rules.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot read {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
    return None


def _rules(args: argparse.Namespace) -> int:
    if args.check and args.output is None:
        print("error: --check needs --output FILE", file=sys.stderr)
        return 2
    generated = _generate(args.override)
    if generated is None:
        return 2
    _, text = generated
    if args.check:
        return _compare({args.output: text})
    if args.output is None:
        sys.stdout.write(text)
        return 0
    return _write({args.output: text})


def _dashboard_files(config: dict[str, Any], out: Path) -> dict[Path, str]:
    from exporter.mixin import dashboards

    return {out / f"{name}.json": dashboards.render(board) for name, board in dashboards.dashboards(config).items()}


def _dashboards(args: argparse.Namespace) -> int:
    generated = _generate(args.override)
    if generated is None:
        return 2
    files = _dashboard_files(generated[0], args.out)
    return _compare(files) if args.check else _write(files)


def _mixin(args: argparse.Namespace) -> int:
    from exporter.mixin.rules import DEFAULT_CONFIG

    generated = _generate(args.override)
    if generated is None:
        return 2
    config, text = generated
    out: Path = args.out
    files: dict[Path, str | Path] = {
        out / "alerts.yaml": text,
        **_dashboard_files(config, out / "dashboards"),
        out / "alertmanager.yml": ALERTMANAGER_EXAMPLE,
        out / "runbooks.md": RUNBOOKS,
        out / "config.yaml": DEFAULT_CONFIG,  # the shipped rule config, to start an override from
    }
    return _write(files)


def _write(files: Mapping[Path, str | Path]) -> int:
    """Write each file (text, or a copy of a packaged file), printing its path; 1 at the first that fails."""
    for path, content in files.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, path)
            else:
                path.write_text(content, encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(path)
    return 0


def _compare(files: Mapping[Path, str]) -> int:
    """0 when every file holds its text, 1 when one differs, 2 when one cannot be read (each said on stderr)."""
    status = 0
    for path, text in files.items():
        try:
            current = path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot check {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 2
            continue
        if current != text:
            print(f"{path} is out of date: regenerate it without --check", file=sys.stderr)
            status = max(status, 1)
    return status
