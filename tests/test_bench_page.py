"""bench/page.py (time to page at the shipped settings) is run by hand; this checks that it measures what it says:
the shipped configs unchanged but for addresses and receivers, and its report."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from exporter.mixin import ALERTMANAGER_EXAMPLE

ROOT = Path(__file__).resolve().parent.parent


def load_page() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_page", ROOT / "bench" / "page.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


page = load_page()


def test_the_bench_runs_the_shipped_prometheus_and_alertmanager_settings() -> None:
    shipped = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    config = page.prometheus_config(["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:3")
    assert config["global"] == shipped["global"]
    assert config["scrape_configs"][0]["scrape_timeout"] == shipped["scrape_configs"][0]["scrape_timeout"]
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]
    assert page.shipped_prometheus_flags() == ["--rules.alert.resend-delay=6m", "--rules.alert.for-grace-period=0s"]
    example = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
    am = page.alertmanager_config("http://127.0.0.1:4/alerts")
    assert am["route"] == example["route"] and am["inhibit_rules"] == example["inhibit_rules"]
    assert {h["url"] for r in am["receivers"] for h in r["webhook_configs"]} == {"http://127.0.0.1:4/alerts"}


def test_stages_add_up_to_the_time_to_page_and_the_report_shows_min_median_max() -> None:
    faults = []
    for offset in (0.0, 3.0, 9.0):
        fault = page.Fault("t00", "FelderaConnectorFatalError", injected=100.0 + offset)
        fault.reported, fault.served = fault.injected + 5, fault.injected + 5.1
        fault.scraped, fault.firing = fault.served + 4 + offset, fault.served + 10 + offset
        fault.alertmanager, fault.notified = fault.firing + 0.1, fault.firing + 5.1
        faults.append(fault)
    stages = [f.stages() for f in faults]
    for s in stages:
        parts = sum(v for k, v in s.items() if k not in ("poll wait", "time to page", "from the fault"))
        assert abs(parts - s["time to page"]) < 1e-9
        assert abs(s["poll wait"] + s["time to page"] - s["from the fault"]) < 1e-9
    summary = page.summary(s["time to page"] for s in stages)
    assert (round(summary["min"], 1), round(summary["median"], 1), round(summary["max"], 1)) == (15.2, 18.2, 24.2)
    doc = {
        "settings": {"injections": 3, "spacing": 16.25, "prometheus": {}, "prometheus flags": [], "alertmanager": "x"},
        "load average": (1.0, 1.0, 1.0),
        "results": {"FelderaConnectorFatalError": {k: page.summary(s[k] for s in stages) for k in stages[0]}},
    }
    text = page.report(doc)
    assert "  time to page      15.2    18.2    24.2" in text


def test_automatic_checkpoints_count_from_the_first_failed_checkpoint_and_have_no_scrape_stage() -> None:
    fault = page.Fault("t00", page.AUTOMATIC, injected=100.0)
    fault.reported = 140.0  # the first automatic checkpoint after the injection, which fails
    fault.firing, fault.alertmanager, fault.notified = 280.0, 280.1, 290.1
    stages = fault.stages()
    assert list(stages) == [*page.AUTOMATIC_STAGES, "time to page", "from the fault"]
    assert (stages["first failure"], stages["until firing"], stages["notification"]) == (40.0, 140.0, 10.0)
    assert (round(stages["time to page"], 1), round(stages["from the fault"], 1)) == (150.1, 190.1)
    fault.alertmanager = None
    with pytest.raises(page.BenchError, match="not observed"):
        fault.stages()
