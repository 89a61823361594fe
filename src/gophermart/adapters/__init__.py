"""Implementations of the application's ports: SQL, in-memory, security, accrual HTTP."""
