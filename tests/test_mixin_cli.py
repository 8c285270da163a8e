"""``feldera-exporter rules``, ``dashboards`` and ``mixin``: overrides, checks, and clear errors for bad input.

That their output is the repository's committed files byte for byte, from the installed wheel, is checked in
tests/test_release.py; the rules' and dashboards' contents in tests/test_alerts.py and tests/test_dashboards.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_rules_print_the_committed_rule_file_and_apply_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules"]) == 0
    assert capsys.readouterr().out == (ROOT / "prometheus" / "alerts.yaml").read_text(encoding="utf-8")
    override = tmp_path / "mine.yaml"
    override.write_text("extra_labels: {team: data-platform}\n", encoding="utf-8")
    assert main(["rules", "--override", str(override)]) == 0
    alerts = [rule for group in yaml.safe_load(capsys.readouterr().out)["groups"] for rule in group["rules"]]
    alerting = [rule for rule in alerts if "alert" in rule]
    assert alerting and all(rule["labels"]["team"] == "data-platform" for rule in alerting)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: cannot read {path}: No such file or directory"),
        ("alerts: [", "error: {path}:1:10: expected the node content, but found '<stream end>'"),
        ("- a list", "error: {path}: expected a mapping of rule-config keys, got list"),
        ("alerts: {FelderaNoSuchAlert: {for: 5m}}", "error: "),
    ],
)
def test_a_bad_override_is_one_error_line_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    override = tmp_path / "mine.yaml"
    if content is not None:
        override.write_text(content, encoding="utf-8")
    assert main(["rules", "--override", str(override), "--output", str(tmp_path / "out.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "out.yaml").exists()
    assert captured.err.splitlines() == [captured.err.strip()]
    assert captured.err.startswith(message.format(path=override))


def test_checks_say_out_of_date_only_for_a_file_that_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "--check"]) == 2  # nothing to compare with
    assert main(["rules", "--check", "--output", str(tmp_path / "missing.yaml")]) == 2
    stale = tmp_path / "alerts.yaml"
    stale.write_text("groups: []\n", encoding="utf-8")
    assert main(["rules", "--check", "--output", str(stale)]) == 1
    assert main(["dashboards", "--out", str(tmp_path / "none"), "--check"]) == 2
    assert main(["dashboards", "--out", str(ROOT / "grafana" / "dashboards"), "--check"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: --check needs --output FILE"
    assert err[1] == f"error: cannot check {tmp_path / 'missing.yaml'}: No such file or directory"
    assert err[2] == f"{stale} is out of date: regenerate it without --check"
    assert err[3].startswith(f"error: cannot check {tmp_path / 'none'}/feldera-")


def test_a_directory_that_cannot_be_written_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory\n", encoding="utf-8")
    assert main(["mixin", "--out", str(blocked)]) == 1
    assert main(["dashboards", "--out", str(blocked / "sub")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith(f"error: cannot write {blocked}/") for line in err)
