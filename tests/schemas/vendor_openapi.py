"""Vendor the Feldera OpenAPI schemas the simulator's responses must satisfy (run when the spec changes).

``python tests/schemas/vendor_openapi.py path/to/openapi.json`` (Feldera's published spec, e.g. from a Feldera
checkout or release; or ``$FELDERA_OPENAPI``) writes ``feldera_openapi_subset.json``: the root schemas below plus
everything they reference, verbatim from ``components/schemas``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "feldera_openapi_subset.json"
SPEC_ENV = "FELDERA_OPENAPI"
"""The environment variable naming Feldera's ``openapi.json`` (for this script and the contract test)."""
ROOTS = (
    "PipelineSelectedInfo",
    "PipelineInfo",
    "CheckpointStatus",
    "CheckpointSyncResponse",
    "CheckpointResponse",
    "CheckpointSyncStatus",
    "ControllerStatus",
    "InputEndpointStatus",
    "OutputEndpointStatus",
    "HealthStatus",
    "Configuration",
    "ErrorResponse",
)


def subset(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"openapi", "version", "components": {"schemas": closure(ROOTS)}}`` in sorted key order."""
    schemas = spec["components"]["schemas"]
    keep: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if name not in keep:
                    keep.add(name)
                    walk(schemas[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for root in ROOTS:
        keep.add(root)
        walk(schemas[root])
    return {
        "openapi": spec["openapi"],
        "version": spec["info"]["version"],
        "components": {"schemas": {name: schemas[name] for name in sorted(keep)}},
    }


def main(argv: list[str]) -> int:
    named = argv[1] if len(argv) > 1 else os.environ.get(SPEC_ENV)
    if not named:
        print(f"usage: {argv[0]} path/to/openapi.json (or set {SPEC_ENV})", file=sys.stderr)
        return 2
    source = Path(named)
    data = subset(json.loads(source.read_text(encoding="utf-8")))
    OUTPUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(data['components']['schemas'])} schemas to {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
