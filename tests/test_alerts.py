"""The shipped alert rules: generated from the config, valid for promtool, unit-tested, documented, routable."""

from __future__ import annotations

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
    return [rule for group in doc["groups"] for rule in group["rules"]]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS.rglob("*.yaml"))


def github_anchors(markdown: str) -> set[str]:
    anchors = set(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


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
    rules = {r["alert"]: r for r in rules_of(yaml.safe_load(output.read_text(encoding="utf-8")))}
    errors = rules["FelderaConnectorErrorsIncreasing"]
    assert "[30m]) + increase(" in errors["expr"] and errors["expr"].endswith(") > 100") and errors["for"] == "10m"
    assert rules["FelderaProgramCompilationFailed"]["labels"]["severity"] == "info"
    assert 'feldera_pipeline_checkpoint_failed{env="prod"}' in rules["FelderaCheckpointFailed"]["expr"]
    assert rules["FelderaApiUnreachable"]["annotations"]["runbook_url"] == (
        "https://wiki.example.com/rb.md#felderaapiunreachable"
    )
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
    assert [(r["labels"]["severity"], r["for"]) for r in rules] == [("warning", "1m"), ("critical", "30m")]


def test_opt_in_alert_is_absent_from_the_shipped_rules_until_enabled() -> None:
    shipped = {r["alert"] for r in rules_of(build.build(shipped_config()))}
    enabled = {r["alert"] for r in rules_of(build.build(all_enabled_config()))}
    assert "FelderaCheckpointOverdue" not in shipped
    assert enabled - shipped == {"FelderaCheckpointOverdue", "FelderaServerUpdateAvailable"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"alerts": {"FelderaNoSuchAlert": {"enabled": True}}}, "alerts: expected exactly"),
        ({"alerts": {"FelderaCheckpointFailed": {"severity": "page"}}}, "severity"),
        ({"alerts": {"FelderaCheckpointFailed": {"for": "soon"}}}, "for: expected a duration"),
        ({"alerts": {"FelderaCheckpointFailed": {"extra": 1}}}, "expected keys"),
        ({"alerts": {"FelderaConnectorErrorsIncreasing": {"threshold": -1}}}, "threshold"),
        (
            {"alerts": {"FelderaExporterShardMissing": {"per_process_labels": ["instance", "shard"]}}},
            "per_process_labels",
        ),
        ({"alerts": {"FelderaExporterShardDuplicated": {"per_process_labels": []}}}, "per_process_labels"),
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


# ---- promtool ------------------------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean() -> None:
    result = run(PROMTOOL, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", rule_test_files(), ids=lambda p: str(p.relative_to(RULE_TESTS)))
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


def test_rules_use_only_metrics_and_labels_the_exporter_emits() -> None:
    specs = {spec.name: spec for spec in ALL_SPECS}
    for rule in rules_of(build.build(all_enabled_config())):
        for selector in re.finditer(r"\b(feldera_\w+)(\{[^}]*\})?", rule["expr"]):
            name, matchers = selector.group(1), selector.group(2) or ""
            assert name in specs, f"{rule['alert']}: {name} is not an exporter metric"
            for label, value in re.findall(r'(\w+)=~?"([^"]*)"', matchers):
                if label == "status":
                    assert set(value.split("|")) <= set(specs[name].states), f"{rule['alert']}: {name} {value}"
                else:
                    assert label in specs[name].labels, f"{rule['alert']}: {name} has no label {label}"


# ---- conventions and runbooks ---------------------------------------------------------------------------------


def test_every_rule_follows_the_naming_label_and_annotation_conventions() -> None:
    base = shipped_config()["runbook_base_url"]
    for rule in rules_of(build.build(all_enabled_config())):
        name = rule["alert"]
        assert re.fullmatch(r"Feldera(?:[A-Z][a-z0-9]*)+", name), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in annotations["summary"], f"{name}: summary must be static"
        assert "$labels." in annotations["description"], f"{name}: description must name what is affected"
        if "pipeline_name" in rule["expr"] or "feldera_pipeline" in rule["expr"]:
            assert "$labels.pipeline_name" in annotations["description"] or "feldera_up" in rule["expr"], name
        if "_connector_" in rule["expr"]:
            assert "$labels.endpoint" in annotations["description"], name
        assert annotations["runbook_url"] == f"{base}#{name.lower()}", name


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


def test_example_alertmanager_config_groups_by_target_and_pipeline() -> None:
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
    assert config["route"]["group_by"] == ["target", "pipeline_name"]


def test_example_prometheus_config_passes_promtool_and_loads_the_rules() -> None:
    result = run(PROMTOOL, "check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yaml"]
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert shipped_config()["exporter_job"] in jobs
