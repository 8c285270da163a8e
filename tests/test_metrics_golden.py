"""The exposition for representative snapshots matches the reviewed golden files, and passes promtool's lint.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_metrics_golden.py`` and
review the diff of ``tests/golden/*.prom``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from golden.snapshots import (
    GOLDEN_DIR,
    METRICS_GROUPS,
    fixture_names,
    load_snapshot,
    metrics_exposition,
    parsed_families,
    rendered,
    text_of,
)

from exporter import docs
from exporter.metrics import ALL_SPECS

REPO = Path(__file__).resolve().parents[1]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _sorted_lines(text: str) -> str:
    return "\n".join(sorted(text.splitlines())) + "\n"


@pytest.mark.parametrize("name", fixture_names())
def test_exposition_matches_golden_file(name: str) -> None:
    actual = _sorted_lines(metrics_exposition(load_snapshot(name)))
    golden = GOLDEN_DIR / f"{name}.prom"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1"
    assert actual == golden.read_text(encoding="utf-8")


def test_golden_fixtures_cover_the_representative_cases() -> None:
    assert {
        "running",
        "stopped",
        "failed_checkpoint",
        "fatal_connector",
        "unknown_enums",
        "deployment_error",
        "label_escaping",
    } <= set(fixture_names())


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool not installed")
@pytest.mark.parametrize("name", fixture_names())
def test_exposition_passes_promtool_check_metrics(name: str) -> None:
    text = text_of(rendered(load_snapshot(name))).encode()
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False)
    assert (result.returncode, result.stdout.decode(), result.stderr.decode()) == (0, "", "")


def test_docs_metrics_md_is_up_to_date() -> None:
    committed = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert committed == docs.render(), "out of date: run `feldera-exporter docs --output docs/metrics.md`"


def test_docs_check_outside_a_checkout_says_the_file_is_missing_not_out_of_date(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "exporter", "docs", "--check"]
    missing = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: cannot check docs/metrics.md: No such file or directory (run it in a")
    assert "out of date" not in missing.stderr
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "metrics.md").write_text("old\n", encoding="utf-8")
    stale = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert (stale.returncode, stale.stderr.split(";")[0]) == (1, "docs/metrics.md is out of date")


@pytest.mark.parametrize("name", fixture_names())
def test_every_emitted_family_is_documented_with_its_labels(name: str) -> None:
    specs = {spec.family_name: spec for spec in ALL_SPECS}
    snapshot = load_snapshot(name)
    target_labels = {key for target in snapshot.targets for key, _ in target.labels}
    for family in parsed_families(snapshot):
        spec = specs.get(family.name)
        assert spec is not None, f"{family.name} is emitted but has no MetricSpec (undocumented)"
        assert spec.type == family.type
        for sample in family.samples:
            identity = {"target"} | target_labels if spec.per_target else set()
            if spec.per_pipeline:
                identity.add("pipeline_name")
            expected = identity | set(spec.labels) | ({"le"} if sample.name.endswith("_bucket") else set())
            assert set(sample.labels) <= expected, f"{sample.name}: {sorted(sample.labels)} vs documented"
            assert set(spec.labels) <= set(sample.labels), f"{sample.name} lacks {spec.labels}"


def test_every_metrics_group_is_documented() -> None:
    text = docs.render()
    for group in METRICS_GROUPS:
        assert f"## Group `{group}`" in text
    for spec in ALL_SPECS:
        assert f"`{spec.name}`" in text
