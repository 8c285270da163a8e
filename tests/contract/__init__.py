"""Contract tests: simulator responses against the vendored Feldera OpenAPI schemas."""
