"""Infrastructure, no business rule: settings, database sessions (commit before the answer),
problem+json errors, the edge (body limits and timeouts, NUL checks), ETags and request ids,
the queue façade, rate limits and idempotency records, cursors, the OpenAPI post-processing,
evidence storage backends, embedded servers, migrations and the results cache's version.

Nothing here imports domain code or a service (import-linter enforces it)."""
