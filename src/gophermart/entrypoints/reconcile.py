"""``gophermart reconcile``: print the reconciliation summary; exit 1 on any mismatch."""

from __future__ import annotations

import asyncio

from gophermart.bootstrap import reconcile
from gophermart.settings import Settings


def run(settings: Settings) -> int:
    report = asyncio.run(reconcile(settings))
    print(report.summary())
    return 0 if report.ok else 1
