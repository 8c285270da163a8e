"""One meaning of a connector's endpoint name ``table.connector``, used for both API paths and metric labels.

Feldera names a connector endpoint ``<relation>.<connector>`` (docs/feldera-api.md): the relation is the table or
view name as a SQL identifier resolves it (unquoted -> lowercased, ``"Quoted"`` keeps its case; a quoted name may
contain dots), the connector name is exact, and unnamed connectors are ``unnamed-0``, ``unnamed-1``, ... per
relation. The connector-stats endpoints take the relation as a SQL identifier and look the endpoint up as
``relation.connector``, so the split that finds the connector is also the one the labels carry.
"""

from __future__ import annotations

import re

_PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def canonical_relation(identifier: str) -> str:
    """A relation name as SQL resolves it: ``"Quoted"`` keeps case (``""`` is a quote), unquoted is lowercased.

    >>> canonical_relation("ORDERS"), canonical_relation('"Orders"')
    ('orders', 'Orders')
    """
    if len(identifier) >= 2 and identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier.lower()


def split_endpoint(endpoint_name: str, stream: str) -> tuple[str, str]:
    """``(relation, connector)`` of an endpoint name; ``stream`` is the connector's ``config.stream`` ("" if unknown).

    The relation is the prefix of the endpoint name that ``stream`` names, exactly or as SQL resolves it (so a
    dotted quoted name stays whole); without such a prefix the endpoint name is split at its first dot, and an
    endpoint name without a dot is all connector, of the relation ``stream`` names.

    >>> split_endpoint("orders.kafka-in", "ORDERS"), split_endpoint("my.table.s3", '"my.table"')
    (('orders', 'kafka-in'), ('my.table', 's3'))
    >>> split_endpoint("a.b.c", ""), split_endpoint("unnamed-0", "t")
    (('a', 'b.c'), ('t', 'unnamed-0'))
    """
    for relation in (stream, canonical_relation(stream)) if stream else ():
        if endpoint_name.startswith(relation) and endpoint_name[len(relation) : len(relation) + 1] == ".":
            return relation, endpoint_name[len(relation) + 1 :]
    relation, dot, connector = endpoint_name.partition(".")
    if not dot:
        return canonical_relation(stream) if stream else "", endpoint_name
    return relation, connector


def sql_identifier(relation: str) -> str:
    """A relation name as the connector-stats path expects it: quoted unless a plain lower-case identifier.

    >>> sql_identifier("orders"), sql_identifier("Customers")
    ('orders', '"Customers"')
    """
    if _PLAIN_IDENTIFIER.match(relation):
        return relation
    return '"' + relation.replace('"', '""') + '"'
