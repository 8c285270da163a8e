"""feldera-exporter: Prometheus exporter and alerting sidecar for Feldera's control plane."""

__version__ = "0.1.0"
