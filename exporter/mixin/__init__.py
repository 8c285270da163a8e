"""What the exporter is for, shipped with it: alert rules, dashboards, an Alertmanager example and the runbooks.

A "mixin" in the kubernetes-mixin sense: the Prometheus rules and Grafana dashboards that go with the exporter's
metrics, tuned from one config. The package carries them so that a ``pip install`` has them:

- ``config.yaml``: thresholds, ``for`` durations, severities, selectors and runbook URL of the alert rules; the
  dashboards read its ``selector``, ``extra_labels`` and ``runbook_base_url`` too. Override files are merged key by
  key over it.
- ``rules.py``: config -> Prometheus rule file (the repository's ``prometheus/alerts.yaml``).
- ``dashboards.py``: config -> Grafana dashboards (the repository's ``grafana/dashboards/*.json``).
- ``alertmanager.yml``: an Alertmanager configuration that routes, groups and inhibits the alerts.
- ``runbooks.md``: one runbook per alert (in the repository a link to ``docs/runbooks.md``, copied into the wheel).
"""

from pathlib import Path

ALERTMANAGER_EXAMPLE = Path(__file__).resolve().parent / "alertmanager.yml"
RUNBOOKS = Path(__file__).resolve().parent / "runbooks.md"
