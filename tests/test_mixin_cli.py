"""``feldera-exporter rules``, ``dashboards`` and ``mixin``: overrides, checks, and clear errors for bad input.

That their output is the repository's committed files byte for byte, from the installed wheel, is checked in
tests/test_release.py; the rules' and dashboards' contents in tests/test_alerts.py and tests/test_dashboards.py.
"""

from __future__ import annotations

import json
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


def test_an_override_reaches_the_rules_and_the_dashboards_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One override file tunes rules and dashboards together (``mixin``, or ``rules`` and ``dashboards`` each): the
    selector scopes every series query of both, the alerts the dashboards show are the ones carrying the extra labels,
    and both link to the same runbooks."""
    override = tmp_path / "eu-1.yaml"
    override.write_text(
        "selector: 'cluster=\"eu-1\"'\nextra_labels: {team: data-platform}\n"
        "runbook_base_url: https://wiki.example.com/feldera/runbooks.md\n",
        encoding="utf-8",
    )
    assert main(["mixin", "--override", str(override), "--out", str(tmp_path / "mixin")]) == 0
    assert main(["dashboards", "--override", str(override), "--out", str(tmp_path / "dashboards")]) == 0
    assert main(["rules", "--override", str(override), "--output", str(tmp_path / "alerts.yaml")]) == 0
    capsys.readouterr()
    assert (tmp_path / "mixin" / "alerts.yaml").read_text() == (tmp_path / "alerts.yaml").read_text()
    boards = {path.name: path.read_text() for path in sorted((tmp_path / "mixin" / "dashboards").glob("*.json"))}
    assert boards == {path.name: path.read_text() for path in sorted((tmp_path / "dashboards").glob("*.json"))}
    assert sorted(boards) == sorted(path.name for path in (ROOT / "grafana" / "dashboards").glob("*.json"))

    rules = [
        rule for group in yaml.safe_load((tmp_path / "alerts.yaml").read_text())["groups"] for rule in group["rules"]
    ]
    alerting = [rule for rule in rules if "alert" in rule]
    assert all(rule["labels"]["team"] == "data-platform" for rule in alerting)
    assert all(rule["annotations"]["runbook_url"].startswith("https://wiki.example.com/") for rule in alerting)
    assert 'cluster="eu-1"' in rules[0]["expr"]

    exprs, links = [], []
    for text in boards.values():
        board = json.loads(text)
        exprs += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
        exprs += [a["expr"] for a in board["annotations"]["list"]]
        for panel in board["panels"]:
            exprs += [target["expr"] for target in panel.get("targets", [])]
            links += [link["url"] for link in panel.get("links", [])]
    alerts = [expr for expr in exprs if "ALERTS{" in expr]  # alerts carry the extra labels, not the selector's
    assert alerts and [expr for expr in alerts if 'team="data-platform"' not in expr] == []
    assert [expr for expr in exprs if expr not in alerts and 'cluster="eu-1"' not in expr] == []
    assert links and [url for url in links if not url.startswith("https://wiki.example.com/feldera/runbooks.md#")] == []
