"""``feldera-exporter demo``: the simulator with a lively scenario plus an exporter polling it."""

from __future__ import annotations

from exporter.simulator.scenario import ConnectorSpec, PipelineSpec, RelationSpec, Scenario


def demo_scenario() -> Scenario:
    """A small fleet in every interesting state: running, paused, failing checkpoints, a fatal connector
    error, a compile error, a stopped and a crashed pipeline."""
    return Scenario(
        edition="enterprise",
        pipelines=[
            PipelineSpec(
                name="orders",
                description="Order ingestion and revenue aggregation",
                status="Running",
                checkpoints=3,
                tables=[
                    RelationSpec(name="orders", connectors=["kafka-orders", None]),
                    RelationSpec(name='"Customers"', connectors=[ConnectorSpec(name="postgres-cdc")]),
                ],
                views=[RelationSpec(name="revenue_by_region", connectors=["delta-revenue"])],
            ),
            PipelineSpec(
                name="fraud-detection",
                status="Running",
                checkpoints=2,
                checkpoint_failure="failed to write checkpoint: No space left on device (os error 28)",
                tables=[RelationSpec(name="payments", connectors=["kafka-payments"])],
                views=[RelationSpec(name="alerts", connectors=["kafka-alerts", "webhook"])],
            ),
            PipelineSpec(
                name="clickstream",
                status="Running",
                checkpoints=1,
                tables=[
                    RelationSpec(
                        name="clicks",
                        connectors=[
                            "pubsub-clicks",
                            ConnectorSpec(
                                name="s3-backfill",
                                fatal_error="S3 error: AccessDenied: Access Denied (bucket clicks-archive)",
                                health="Unhealthy",
                                health_description="AccessDenied",
                            ),
                        ],
                    )
                ],
                views=[RelationSpec(name="sessions", connectors=["redis-sessions"])],
            ),
            PipelineSpec(
                name="inventory",
                status="Paused",
                checkpoints=1,
                tables=[RelationSpec(name="stock", connectors=["file-stock"])],
                views=[RelationSpec(name="low_stock", connectors=[None])],
            ),
            PipelineSpec(
                name="reporting-draft",
                status="Stopped",
                program_status="SqlError",
                program_error='Error parsing SQL: Encountered "FORM" at line 3, column 10.',
            ),
            PipelineSpec(name="archive", status="Stopped", storage_status="Cleared"),
        ],
    )
