"""Golden-file fixtures of the metric layer: ``*.json`` snapshots in, ``*.prom`` expositions out."""
