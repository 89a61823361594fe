"""The ways in: the HTTP API, the CLI, the background worker, the accrual simulator."""
