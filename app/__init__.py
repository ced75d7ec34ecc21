"""opsdesk core: settings, database access, risk policy, approval queue, executor, API, CLI."""
