"""The shipped alert rules: generated from the config, valid for promtool, unit-tested, documented, routable."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main
from exporter.metrics import ALL_SPECS
from exporter.mixin import rules as build
from tests.markdown import github_anchors

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "prometheus"
RULES = PROMETHEUS / "alerts.yaml"
ALERTMANAGER_EXAMPLE = ROOT / "exporter" / "mixin" / "alertmanager.yml"
RULE_TESTS = ROOT / "tests" / "rules"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
OPTIN_RULES_NAME = "alerts-all.yaml"


def shipped_config() -> dict[str, Any]:
    return build.load_config(build.DEFAULT_CONFIG)


def all_enabled_config() -> dict[str, Any]:
    config = shipped_config()
    return build.merge(config, {"alerts": {name: {"enabled": True} for name in config["alerts"]}})


def rules_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerting rules of a rule file (recording rules left out)."""
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def recordings_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in doc["groups"] for rule in group["rules"] if "record" in rule]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


SLOW_RULE_TESTS = {"automatic_checkpoints.yaml", "resources.yaml", "sequences.yaml", "server.yaml"}
"""Rule test files promtool needs over 3 s for (days of samples evaluated against every rule)."""


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS.rglob("*.yaml"))


def rule_test_params() -> list[Any]:
    return [
        pytest.param(
            path, id=str(path.relative_to(RULE_TESTS)), marks=pytest.mark.slow if path.name in SLOW_RULE_TESTS else ()
        )
        for path in rule_test_files()
    ]


def runbook_sections() -> dict[str, str]:
    text = RUNBOOKS.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0].strip(): part for part in parts}


# ---- generation ---------------------------------------------------------------------------------------------


def test_alerts_yaml_is_what_the_rule_generator_makes_of_the_config() -> None:
    assert RULES.read_text(encoding="utf-8") == build.render(shipped_config()), "regenerate it"


def test_build_check_mode_reports_an_outdated_rule_file(tmp_path: Path) -> None:
    stale = tmp_path / "alerts.yaml"
    stale.write_text("groups: []\n", encoding="utf-8")
    assert main(["rules", "--check", "--output", str(stale)]) == 1
    assert main(["rules", "--output", str(stale)]) == 0
    assert main(["rules", "--check", "--output", str(stale)]) == 0


def test_override_file_changes_thresholds_for_severity_and_selector(tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "runbook_base_url": "https://wiki.example.com/rb.md",
                "dashboard_base_url": "https://grafana.example.com/",
                "selector": 'env="prod"',
                "alerts": {
                    "FelderaConnectorErrorsIncreasing": {"threshold": 100, "window": "30m", "for": "10m"},
                    "FelderaProgramCompilationFailed": {"severity": "info"},
                },
            }
        ),
        encoding="utf-8",
    )
    output = tmp_path / "mine.yaml"
    assert main(["rules", "--override", str(override), "--output", str(output)]) == 0
    doc = yaml.safe_load(output.read_text(encoding="utf-8"))
    rules = {r["alert"]: r for r in rules_of(doc)}
    records = {r["record"]: r["expr"] for r in recordings_of(doc)}
    errors = rules["FelderaConnectorErrorsIncreasing"]
    assert errors["expr"].endswith(" > 100") and errors["for"] == "10m"
    assert "[30m]) + increase(" in records["pipeline_endpoint:feldera_input_connector_errors:process_window"]
    assert rules["FelderaProgramCompilationFailed"]["labels"]["severity"] == "info"
    current = records["pipeline:feldera_pipeline_checkpoint_failed:current_process"]
    assert 'feldera_pipeline_checkpoint_failed{env="prod"}' in current
    assert rules["FelderaApiUnreachable"]["annotations"]["runbook_url"] == (
        "https://wiki.example.com/rb.md#felderaapiunreachable"
    )
    assert rules["FelderaCheckpointFailed"]["annotations"]["dashboard_url"].startswith(
        "https://grafana.example.com/d/feldera-pipeline/feldera-pipeline?var-job="
    )
    assert 'env="prod", target=%[1]q' in rules["FelderaCheckpointFailed"]["annotations"]["description"]
    assert run(PROMTOOL, "check", "rules", output).returncode == 0


def test_extra_labels_and_keep_firing_for_reach_the_rules(tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "extra_labels": {"team": "data", "cluster": "eu-1"},
                "alerts": {"FelderaApiUnreachable": {"keep_firing_for": "10m"}},
            }
        ),
        encoding="utf-8",
    )
    output = tmp_path / "mine.yaml"
    assert main(["rules", "--override", str(override), "--output", str(output)]) == 0
    rules = rules_of(yaml.safe_load(output.read_text(encoding="utf-8")))
    assert all(r["labels"]["team"] == "data" and r["labels"]["cluster"] == "eu-1" for r in rules)
    kept = {r["alert"]: r["keep_firing_for"] for r in rules if "keep_firing_for" in r}
    assert kept == {"FelderaApiUnreachable": "10m"}
    assert run(PROMTOOL, "check", "rules", output).returncode == 0


def test_checkpoint_failed_escalates_under_the_same_name() -> None:
    rules = [r for r in rules_of(build.build(shipped_config())) if r["alert"] == "FelderaCheckpointFailed"]
    assert [(r["labels"]["severity"], r.get("for")) for r in rules] == [("warning", None), ("critical", "30m")]


def test_latched_terminal_states_page_without_a_for() -> None:
    """A connector's fatal error and a deployment error stay until the pipeline restarts: the first poll that
    reports them is the truth, a ``for`` would only delay the page."""
    rules = {r["alert"]: r for r in rules_of(build.build(shipped_config()))}
    for name in ("FelderaConnectorFatalError", "FelderaPipelineDeploymentError"):
        assert "for" not in rules[name] and rules[name]["labels"]["severity"] == "critical", name


def test_opt_in_alert_is_absent_from_the_shipped_rules_until_enabled() -> None:
    shipped = {r["alert"] for r in rules_of(build.build(shipped_config()))}
    enabled = {r["alert"] for r in rules_of(build.build(all_enabled_config()))}
    assert "FelderaServerUpdateAvailable" not in shipped
    assert enabled - shipped == {"FelderaServerUpdateAvailable"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"alerts": {"FelderaCheckpointFail": {"for": "1h"}}},
            "alerts: unknown ['FelderaCheckpointFail'] (did you mean FelderaCheckpointFailed?)",
        ),
        ({"alerts": {"NoSuchAlert": {"for": "1h"}}}, "alerts: unknown ['NoSuchAlert'] (the alerts are the sections"),
        ({"alerts": []}, "alerts: expected a mapping of alert names to their settings; got []"),
        ({"alerts": {"FelderaCheckpointFailed": {"severity": "page"}}}, "severity"),
        ({"alerts": {"FelderaCheckpointFailed": {"for": "soon"}}}, "for: expected a duration"),
        ({"alerts": {"FelderaCheckpointFailed": {"extra": 1}}}, "expected keys"),
        ({"alerts": {"FelderaConnectorErrorsIncreasing": {"threshold": -1}}}, "threshold"),
        ({"per_process_labels": ["instance", "shard"]}, "per_process_labels"),
        ({"per_process_labels": []}, "per_process_labels"),
        ({"pipeline_labels": ["job", "instance", "target", "pipeline_name"]}, "must not contain per_process_labels"),
        ({"relapse_hold": "10m"}, "relapse_hold: must be shorter than gap_window"),
        ({"relapse_hold": "soon"}, "relapse_hold: expected a duration"),
        ({"dashboard_base_url": "grafana"}, "dashboard_base_url: expected an http(s) URL"),
        ({"alerts": {"FelderaConnectorUnhealthy": {"ratio": 2}}}, "ratio: expected a number in (0, 1]"),
        ({"alerts": {"FelderaExporterShardMissing": {"per_process_labels": ["instance"]}}}, "expected keys"),
        ({"gap_window": 5}, "gap_window"),
        ({"alerts": {"FelderaConnectorErrorsIncreasing": {"window": "5m"}}}, "must not be shorter than gap_window"),
        ({"alerts": {"FelderaCheckpointFailed": {"failures": 0}}}, "failures: expected a number >= 1"),
        ({"alerts": {"FelderaCheckpointFailed": {"keep_firing_for": "a while"}}}, "keep_firing_for: expected"),
        ({"alerts": {"FelderaClusterServiceUnhealthy": {"warning_services": []}}}, "warning_services"),
        ({"extra_labels": {"severity": "low"}}, "extra_labels"),
        ({"process_boundary_statuses": []}, "process_boundary_statuses"),
        ({"surprise": True}, "unknown ['surprise']"),
    ],
)
def test_invalid_config_is_rejected_with_its_location(override: dict[str, Any], message: str) -> None:
    with pytest.raises(build.ConfigError, match=re.escape(message)):
        build.build(build.merge(shipped_config(), override))


def test_a_rule_config_without_one_of_the_alerts_names_it() -> None:
    config = shipped_config()
    del config["alerts"]["FelderaCheckpointFailed"]
    with pytest.raises(build.ConfigError, match=re.escape("alerts: missing ['FelderaCheckpointFailed']")):
        build.build(config)


# ---- promtool ------------------------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean() -> None:
    result = run(PROMTOOL, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", rule_test_params())
def test_promtool_rule_unit_tests_pass(test_file: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(test_file.read_text(encoding="utf-8"))
    if spec["rule_files"] == [OPTIN_RULES_NAME]:
        # opt-in alerts: run against the shipped config with every alert enabled
        (tmp_path / OPTIN_RULES_NAME).write_text(build.render(all_enabled_config()), encoding="utf-8")
        test_file = Path(shutil.copy(test_file, tmp_path / test_file.name))
    else:
        assert [(test_file.parent / f).resolve() for f in spec["rule_files"]] == [RULES]
    result = run(PROMTOOL, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_unit_test_and_a_silent_one() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for test_file in rule_test_files():
        for case in yaml.safe_load(test_file.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {r["alert"] for r in rules_of(build.build(all_enabled_config()))}
    assert names - firing == set(), "alerts without a firing unit test"
    assert names - silent == set(), "alerts without a must-not-fire unit test"
    assert (firing | silent) - names == set(), "unit tests for unknown alerts"


def test_firing_unit_tests_state_every_label_and_annotation() -> None:
    severities: dict[str, set[str]] = {}
    annotations: dict[str, set[str]] = {}
    for rule in rules_of(build.build(all_enabled_config())):  # an alert may be several rules (escalation)
        severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
        annotations[rule["alert"]] = set(rule["annotations"])
    for test_file in rule_test_files():
        for case in yaml.safe_load(test_file.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                for alert in check.get("exp_alerts") or []:
                    assert alert["exp_labels"]["severity"] in severities[check["alertname"]], (test_file, check)
                    assert set(alert["exp_annotations"]) == annotations[check["alertname"]], (test_file, check)


RECORD_NAME = re.compile(
    r"^(pipeline|pipeline_endpoint|target):feldera_\w+:(bridged|current_process|gap_window|relapse_hold|process_\w+|ratio_window|unread|superseded)$"
)
"""level:metric:operation (docs/runbooks.md, "Recording rules")."""


SLOW_GROUPS = ("feldera-sidecar", "feldera-server")


def _exprs(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


def test_rules_use_only_metrics_and_labels_the_exporter_emits() -> None:
    specs = {spec.name: spec for spec in ALL_SPECS}
    doc = build.build(all_enabled_config())
    for name, expr in _exprs(doc):
        # raw families, not the feldera_... part of a recording rule's name (level:metric:operation)
        for selector in re.finditer(r"(?<![:\w])(feldera_\w+)(?!:)(\{[^}]*\})?", expr):
            metric, matchers = selector.group(1), selector.group(2) or ""
            assert metric in specs, f"{name}: {metric} is not an exporter metric"
            for label, value in re.findall(r'(\w+)=~?"([^"]*)"', matchers):
                if label == specs[metric].state_label and specs[metric].states:
                    assert set(value.split("|")) <= set(specs[metric].states), f"{name}: {metric} {value}"
                else:
                    assert label in specs[metric].labels, f"{name}: {metric} has no label {label}"
    for rule in rules_of(doc):  # the error texts the descriptions look up
        for metric in re.findall(r"(feldera_\w+_info)\{", rule["annotations"]["description"]):
            assert metric in specs, f"{rule['alert']}: {metric} is not an exporter metric"


def test_recording_rules_are_named_level_metric_operation_and_come_before_every_rule_that_reads_them() -> None:
    doc = build.build(all_enabled_config())
    seen: dict[str, str] = {}
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule["record"]
            used = set(re.findall(r"\b((?:pipeline|pipeline_endpoint|target):feldera_\w+:\w+)", rule["expr"]))
            for record in used - {name}:  # a recording may read its own earlier results (the gone set does)
                assert record in seen, f"{name} reads {record} before it is recorded"
                # same group: read in the same evaluation, no extra interval on the way to a page (the sidecar's
                # and the server's alerts wait minutes to days: they may read the pipeline group's one evaluation late)
                assert seen[record] == group["name"] or group["name"] in SLOW_GROUPS, (name, record)
            if "record" in rule:
                assert RECORD_NAME.match(rule["record"]), rule["record"]
                assert rule["record"] not in seen, f"{rule['record']} recorded twice"
                seen[rule["record"]] = group["name"]
    read = {
        r
        for _, expr in _exprs(doc)
        for r in re.findall(r"\b(?:pipeline|pipeline_endpoint|target):feldera_\w+:\w+", expr)
    }
    assert set(seen) == read, "recording rules nothing reads"


def test_alerts_read_the_shared_logic_from_recording_rules() -> None:
    """The gap bridge, the process boundary and the aggregation over scraping exporters live in recording rules;
    an alert reads them in a few lines (issue 27: one alert used to repeat the bridge eight times)."""
    for rule in rules_of(build.build(all_enabled_config())):
        name, expr = rule["alert"], rule["expr"]
        assert len(expr.splitlines()) <= 12, f"{name}: {len(expr.splitlines())} lines"
        if name != "FelderaExporterPollsStale":  # about one exporter process, as FelderaExporterDown
            assert "last_over_time(" not in expr, f"{name} bridges gaps itself"
        assert 'status=~"Stopped|Stopping' not in expr, f"{name} tests the process boundary itself"


def test_alert_identity_does_not_depend_on_the_scraping_exporter() -> None:
    """Every alert about Feldera aggregates instance and pod away: an exporter rollout (a new pod, a new instance)
    neither duplicates nor re-notifies it. Only the alerts about one exporter process keep them."""
    per_process = shipped_config()["per_process_labels"]
    doc = build.build(all_enabled_config())
    for rule in rules_of(doc):
        if rule["alert"] in ("FelderaExporterDown", "FelderaExporterPollsStale", "FelderaExporterPollsCutOff"):
            continue
        raw = re.findall(r"(?<![:\w])(feldera_\w+)(?!:)", rule["expr"])
        aggregated = (
            f"without ({', '.join(per_process)})" in rule["expr"] or f"without({', '.join(per_process)}" in rule["expr"]
        )
        assert not raw or aggregated, f"{rule['alert']} reads {raw} per exporter"
    for record in recordings_of(doc):
        raw = re.findall(r"(?<![:\w])(feldera_\w+)(?!:)", record["expr"])
        if raw and not record["record"].endswith((":gap_window", ":relapse_hold")):
            assert f"without({', '.join(per_process)}" in record["expr"], record["record"]


# ---- conventions and runbooks ---------------------------------------------------------------------------------


def test_every_rule_follows_the_naming_label_and_annotation_conventions() -> None:
    config = shipped_config()
    base = config["runbook_base_url"]
    for rule in rules_of(build.build(all_enabled_config())):
        name = rule["alert"]
        assert re.fullmatch(r"Feldera(?:[A-Z][a-z0-9]*)+", name), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}, name
        description, summary = annotations["description"], annotations["summary"]
        assert "$labels." in description, f"{name}: description must name what is affected"
        # the pager's one line stands alone: whatever the description names, the summary names too
        for label in ("target", "pipeline_name", "endpoint", "instance", "service", "watch"):
            if f"$labels.{label} " in description:
                assert f"$labels.{label} " in summary, f"{name}: summary lacks {label}"
        if "pipeline_name" in rule["expr"] or "feldera_pipeline" in rule["expr"]:
            assert "$labels.pipeline_name" in description or "feldera_up" in rule["expr"], name
        if "_connector_" in rule["expr"]:
            assert "$labels.endpoint" in description, name
        assert annotations["runbook_url"] == f"{base}#{name.lower()}", name
        dashboard = annotations["dashboard_url"]
        assert dashboard.startswith(config["dashboard_base_url"] + "/d/feldera-"), name
        for variable in re.findall(r"var-(\w+)=", dashboard):
            assert f"var-{variable}={{{{ $labels.{variable} | urlquery }}}}" in dashboard, name
        if "$labels.pipeline_name" in description:
            assert "/d/feldera-pipeline/" in dashboard and "var-pipeline_name=" in dashboard, name


def test_dashboard_links_open_shipped_dashboards_with_their_variables() -> None:
    grafana = ROOT / "grafana" / "dashboards"
    for rule in rules_of(build.build(all_enabled_config())):
        url = rule["annotations"]["dashboard_url"]
        uid = re.search(r"/d/([\w-]+)/", url).group(1)
        dashboard = json.loads((grafana / f"{uid}.json").read_text(encoding="utf-8"))
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert set(re.findall(r"var-(\w+)=", url)) <= variables, rule["alert"]


def test_every_recording_rule_is_documented_in_the_runbooks() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    for record in recordings_of(build.build(all_enabled_config())):
        assert f"`{record['record']}`" in text, f"docs/runbooks.md does not name {record['record']}"


def test_every_alert_has_a_runbook_section_with_meaning_impact_diagnosis_and_remediation() -> None:
    sections = runbook_sections()
    anchors = github_anchors(RUNBOOKS.read_text(encoding="utf-8"))
    for rule in rules_of(build.build(all_enabled_config())):
        name = rule["alert"]
        assert name in sections, f"docs/runbooks.md has no section '## {name}'"
        assert rule["annotations"]["runbook_url"].rsplit("#", 1)[1] in anchors, name
        for part in ("**Meaning.**", "**Impact.**", "**Diagnosis.**", "**Remediation.**"):
            assert part in sections[name], f"{name}: runbook lacks {part}"


def test_runbooks_describe_no_alert_that_does_not_exist() -> None:
    names = {r["alert"] for r in rules_of(build.build(all_enabled_config()))}
    documented = {title for title in runbook_sections() if title.startswith("Feldera")}
    assert documented == names


def test_the_readme_counts_the_shipped_alerts() -> None:
    """The README's count is the shipped rule file's (the opt-in alerts left out), not a number written once."""
    shipped = {rule["alert"] for rule in rules_of(yaml.safe_load(RULES.read_text(encoding="utf-8")))}
    counts = re.findall(r"\((\d+) alerts, each with a runbook\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert counts == [str(len(shipped))]


# ---- example configs -----------------------------------------------------------------------------------------


def test_example_alertmanager_config_passes_amtool() -> None:
    result = run(AMTOOL, "check-config", ALERTMANAGER_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=FelderaConnectorFatalError", "severity=critical"], "feldera-critical"),
        (["alertname=FelderaCheckpointFailed", "severity=warning"], "feldera-warning"),
        (["alertname=FelderaCheckpointSyncUnsupported", "severity=info"], "feldera-info"),
    ],
)
def test_example_alertmanager_config_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = run(AMTOOL, "config", "routes", "test", "--config.file", ALERTMANAGER_EXAMPLE, *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_example_alertmanager_config_makes_one_incident_one_notification_and_tells_a_relapse() -> None:
    """One notification per Feldera target and alert name (a storm of pipelines is one message listing them); the
    critical route waits seconds; and on the critical and the warning route (each carries alerts a restart can leave
    unfixed: a fatal error, a failed checkpoint or sync that fails again at once) group_interval plus two evaluation
    intervals is not longer than the rules' relapse_hold: the resolve of a restart holds for at least relapse_hold
    less one evaluation (the first evaluation may not see the restart's scrape yet), so it always meets a flush of
    its group and is sent before the relapse fires again, and both are told (docs/runbooks.md, "What reaches a
    person")."""
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
    assert config["route"]["group_by"] == ["namespace", "target", "alertname"]
    routes = {r["receiver"]: {**config["route"], **r} for r in config["route"]["routes"]}  # a route inherits
    seconds = build.duration_seconds
    assert seconds(routes["feldera-critical"]["group_wait"], "group_wait") <= 5
    hold = seconds(shipped_config()["relapse_hold"], "relapse_hold")
    example = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    evaluation = seconds(example["global"]["evaluation_interval"], "evaluation_interval")
    for receiver in ("feldera-critical", "feldera-warning"):
        assert seconds(routes[receiver]["group_interval"], "group_interval") + 2 * evaluation <= hold, receiver
    for rule in config["inhibit_rules"]:  # alerts carry no instance (an exporter rollout changes nothing)...
        if rule["source_matchers"] != ['alertname="FelderaExporterDown"']:  # ...but the exporter's own ones
            assert "instance" not in rule["equal"], rule


def test_example_prometheus_config_passes_promtool_and_loads_the_rules() -> None:
    result = run(PROMTOOL, "check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    assert config["rule_files"] == ["alerts.yaml"]
    # every poll cycle (15s) scraped once and evaluated at once; the restart flags are named where users look
    assert config["global"] == {"scrape_interval": "15s", "evaluation_interval": "15s"}
    assert "--rules.alert.resend-delay=6m" in text and "--rules.alert.for-grace-period=0s" in text
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert shipped_config()["exporter_job"] in jobs
