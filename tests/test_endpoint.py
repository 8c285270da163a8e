"""One meaning of ``table.connector``: the split that builds connector-stats URLs is the one labels carry."""

from __future__ import annotations

import pytest

from exporter.config import build_settings
from exporter.endpoint import canonical_relation, split_endpoint, sql_identifier
from exporter.metrics import families
from exporter.render import render
from exporter.simulator import ManualClock, PipelineSpec, RelationSpec, Scenario, Simulator
from tests.conftest import new_poller
from tests.test_app import samples
from tests.test_robustness_isolation import polled


@pytest.mark.parametrize(
    ("endpoint", "stream", "expected"),
    [
        ("orders.kafka", "orders", ("orders", "kafka")),
        ("orders.unnamed-0", "", ("orders", "unnamed-0")),
        ("orders.kafka", "ORDERS", ("orders", "kafka")),  # unquoted in SQL: lowercased
        ("Orders.kafka", '"Orders"', ("Orders", "kafka")),  # quoted: keeps case
        ("Orders.kafka", "Orders", ("Orders", "kafka")),  # stream as the endpoint spells it
        ("My.Table.kafka", "My.Table", ("My.Table", "kafka")),  # a dotted (quoted) name stays whole
        ("my.table.kafka", '"my.table"', ("my.table", "kafka")),
        ("t.kafka.v2", "t", ("t", "kafka.v2")),  # a dotted connector name stays whole
        ("a.b.c", "", ("a", "b.c")),
        # the cases the two former copies disagreed on: one answer for URLs and labels
        ("unnamed-0", "t", ("t", "unnamed-0")),
        ("foo.kafka", "bar", ("foo", "kafka")),
        ("nodot", "", ("", "nodot")),
    ],
)
def test_endpoint_splits_into_relation_and_connector(endpoint: str, stream: str, expected: tuple[str, str]) -> None:
    assert split_endpoint(endpoint, stream) == expected


def test_relations_are_sql_identifiers() -> None:
    assert [canonical_relation(n) for n in ("Orders", '"Orders"', '"say ""hi"""', '"')] == [
        "orders",
        "Orders",
        'say "hi"',
        '"',
    ]
    assert [sql_identifier(n) for n in ("orders", "_t1", "Customers", "my.table", "1st")] == [
        "orders",
        "_t1",
        '"Customers"',
        '"my.table"',
        '"1st"',
    ]


async def test_urls_reach_every_connector_and_labels_use_the_same_split() -> None:
    """Quoted, dotted and unnamed relations over real HTTP: every per-connector call finds its endpoint, and the
    labels of the served series are the relation and connector the URL used."""
    scenario = Scenario(
        pipelines=[
            PipelineSpec(
                name="p",
                status="Running",
                tables=[
                    RelationSpec(name='"My.Orders"', connectors=["kafka.v2", None]),
                    RelationSpec(name="CUSTOMERS", connectors=["s3"]),
                ],
                views=[RelationSpec(name='"Totals"', connectors=[None])],
            )
        ]
    )
    async with Simulator(scenario, clock=ManualClock()) as sim:
        settings = build_settings({"targets": [{"url": sim.url}], "collectors": {"connector_errors": True}}, env={})
        (snapshot,) = await polled(new_poller(settings))
    (pipeline,) = snapshot.targets[0].pipelines
    assert sorted(pipeline.connector_details) == [
        "My.Orders.kafka.v2",
        "My.Orders.unnamed-0",
        "Totals.unnamed-0",
        "customers.s3",
    ]
    text = b"".join(render(families(snapshot)).plain_chunks(openmetrics=False)).decode()
    found = samples(text)
    inputs = {
        (dict(labels)["endpoint"], dict(labels)["table"], dict(labels)["connector"])
        for name, labels in found
        if name == "feldera_input_connector_fatal_error"
    }
    assert inputs == {
        ("My.Orders.kafka.v2", "My.Orders", "kafka.v2"),
        ("My.Orders.unnamed-0", "My.Orders", "unnamed-0"),
        ("customers.s3", "customers", "s3"),
    }
    outputs = {
        (dict(labels)["view"], dict(labels)["connector"])
        for name, labels in found
        if name == "feldera_output_connector_fatal_error"
    }
    assert outputs == {("Totals", "unnamed-0")}
