"""``gophermart reconcile``: print the reconciliation summary; exit 1 on any mismatch."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from gophermart.application.reconcile import ReconcileReport
from gophermart.facade import Gophermart
from gophermart.settings import Settings


async def _reconcile(settings: Settings) -> ReconcileReport:
    # An audit reads the database as it is: never migrates it (a database behind this
    # release is refused in one line, like a server told not to migrate).
    async with Gophermart.from_settings(replace(settings, migrate=False)) as loyalty:
        return await loyalty.reconcile()


def run(settings: Settings) -> int:
    report = asyncio.run(_reconcile(settings))
    print(report.summary())
    return 0 if report.ok else 1
