"""``gophermart reconcile``: print the reconciliation summary; exit 1 on any mismatch."""

from __future__ import annotations

import asyncio

from gophermart.application.reconcile import ReconcileReport
from gophermart.facade import Gophermart
from gophermart.settings import Settings


async def _reconcile(settings: Settings) -> ReconcileReport:
    async with Gophermart.from_settings(settings) as loyalty:  # migrated, like any start
        return await loyalty.reconcile()


def run(settings: Settings) -> int:
    report = asyncio.run(_reconcile(settings))
    print(report.summary())
    return 0 if report.ok else 1
