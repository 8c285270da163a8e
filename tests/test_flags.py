"""Each flag, its config key and its environment variable are declared once (exporter/flags.py); the parser, the
overrides, the sources named in problems and the flag table of docs/configuration.md all follow the declaration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter import docs
from exporter.cli import build_parser, settings_from
from exporter.config import ConfigError, build_settings
from exporter.flags import ENABLE_RESET_WATCH_API, FELDERA_URL, OPTIONS, Option

CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
VALUED = [o for o in OPTIONS if o.key is not None and not o.switch]


def _location(option: Option) -> str:
    """Where a problem with the option's value is reported (the URL goes to the target it creates)."""
    return "targets[0].url" if option is FELDERA_URL else str(option.key)


def test_the_documented_flag_table_is_the_declarations() -> None:
    doc = CONFIGURATION.read_text(encoding="utf-8")
    assert docs.with_flag_table(doc) == doc, "out of date: run `feldera-exporter docs --flags docs/configuration.md`"
    assert docs.flag_table() in doc


def test_docs_flags_check_tells_up_to_date_out_of_date_and_nothing_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ``docs --check`` for the metrics reference: 1 only when the table differs, 2 when there is none."""
    from exporter.cli import main

    doc = tmp_path / "configuration.md"
    doc.write_text(f"# Flags\n\n{docs.TABLE_START}\n| old |\n{docs.TABLE_END}\n", encoding="utf-8")
    stale = main(["docs", "--check", "--flags", str(doc)])
    assert main(["docs", "--flags", str(doc)]) == 0
    fresh = main(["docs", "--check", "--flags", str(doc)])
    missing = main(["docs", "--check", "--flags", str(tmp_path / "none.md")])
    (tmp_path / "plain.md").write_text("# No table\n", encoding="utf-8")
    unmarked = main(["docs", "--check", "--flags", str(tmp_path / "plain.md")])
    assert (stale, fresh, missing, unmarked) == (1, 0, 2, 2)
    assert doc.read_text(encoding="utf-8") == f"# Flags\n\n{docs.TABLE_START}\n{docs.flag_table()}{docs.TABLE_END}\n"
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{doc}: flag table out of date; run: feldera-exporter docs --flags {doc}"
    assert err[1] == f"error: cannot check {tmp_path / 'none.md'}: No such file or directory"
    assert err[2].startswith(f"error: cannot check {tmp_path / 'plain.md'}: no lines ")


def test_run_takes_exactly_the_declared_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    usage = capsys.readouterr().out.partition("\n\n")[0]
    assert set(re.findall(r"--[\w.-]+", usage)) == {o.flag for o in OPTIONS if o.flag is not None}


@pytest.mark.parametrize("option", VALUED, ids=lambda o: o.flag)
def test_a_bad_value_from_a_flag_is_reported_at_its_key_naming_the_flag(option: Option) -> None:
    args = build_parser().parse_args(["run", str(option.flag), "(("])
    with pytest.raises(ConfigError) as caught:
        settings_from(args)
    assert any(p.startswith(f"{_location(option)} (from {option.flag}): ") for p in caught.value.problems), (
        caught.value.problems
    )


@pytest.mark.parametrize("option", [o for o in VALUED if o.env is not None], ids=lambda o: o.env)
def test_a_bad_value_from_the_environment_is_reported_naming_the_variable(option: Option) -> None:
    with pytest.raises(ConfigError) as caught:
        build_settings({}, env={str(option.env): "(("})
    assert any(p.startswith(f"{_location(option)} (from {option.env}): ") for p in caught.value.problems)


def test_a_flag_beats_the_environment_and_the_file() -> None:
    settings = build_settings(
        {"targets": [{"url": "http://file:1"}], "web": {"listen_address": ":1"}},
        overrides={"--feldera-url": "http://flag:2", "--web.listen-address": ":3", "--shard": "1", "--total-shards": 2},
        env={"FELDERA_URL": "http://env:4"},
    )
    assert (settings.targets[0].url, settings.web.listen_address) == ("http://flag:2", ":3")
    assert (settings.sharding.shard, settings.sharding.total_shards) == (1, 2)


def test_a_switch_sets_its_key_and_an_absent_switch_leaves_the_file_alone() -> None:
    key = str(ENABLE_RESET_WATCH_API.key).split(".")
    on = settings_from(build_parser().parse_args(["run", str(ENABLE_RESET_WATCH_API.flag)]))
    off = settings_from(build_parser().parse_args(["run"]))
    assert (getattr(getattr(on, key[0]), key[1]), getattr(getattr(off, key[0]), key[1])) == (True, False)


def test_an_undeclared_override_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="--nope"):
        build_settings({}, overrides={"--nope": "1"}, env={})
