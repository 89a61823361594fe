"""The reconciliation queries (see :mod:`gophermart.application.reconcile`)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.application.reconcile import ReconcileReport

_BALANCES = text("""
    SELECT a.user_id, a.balance, a.withdrawn, COALESCE(l.credits, 0) AS credits,
           COALESCE(l.debits, 0) AS debits
    FROM accounts a
    LEFT JOIN (
        SELECT user_id,
               SUM(CASE WHEN kind = 'accrual' THEN amount ELSE 0 END) AS credits,
               SUM(CASE WHEN kind = 'withdrawal' THEN amount ELSE 0 END) AS debits
        FROM ledger GROUP BY user_id
    ) l ON l.user_id = a.user_id
    WHERE a.balance <> COALESCE(l.credits, 0) - COALESCE(l.debits, 0)
       OR a.withdrawn <> COALESCE(l.debits, 0)
    ORDER BY a.user_id
""")

_UNCREDITED = text("""
    SELECT o.number, o.user_id, o.accrual, l.user_id AS credited_user, l.amount AS credited
    FROM orders o
    LEFT JOIN ledger l ON l.kind = 'accrual' AND l.order_number = o.number
    WHERE o.status = 'PROCESSED' AND o.accrual IS NOT NULL
      AND (l.id IS NULL OR l.amount <> o.accrual OR l.user_id <> o.user_id)
    ORDER BY o.number
""")

_ORPHAN_CREDITS = text("""
    SELECT l.order_number, l.user_id
    FROM ledger l
    LEFT JOIN orders o ON o.number = l.order_number
    WHERE l.kind = 'accrual' AND (o.id IS NULL OR o.status <> 'PROCESSED')
    ORDER BY l.order_number
""")

_COUNTS = text("""
    SELECT (SELECT COUNT(*) FROM accounts) AS accounts,
           (SELECT COUNT(*) FROM orders WHERE status = 'PROCESSED') AS processed,
           (SELECT COUNT(*) FROM ledger) AS entries
""")


def _points(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class SqlLedgerAudit:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def reconcile(self) -> ReconcileReport:
        # One REPEATABLE READ snapshot on PostgreSQL so a live service cannot make the
        # checks disagree with each other mid-way; SQLite's read transaction is one anyway.
        engine = self._engine
        if engine.dialect.name == "postgresql":
            engine = engine.execution_options(isolation_level="REPEATABLE READ")
        problems: list[str] = []
        async with engine.connect() as conn:
            counts = (await conn.execute(_COUNTS)).one()
            for r in await conn.execute(_BALANCES):
                problems.append(
                    f"user {r.user_id}: balance {_points(r.balance)} withdrawn "
                    f"{_points(r.withdrawn)}, but the ledger says credits {_points(r.credits)} "
                    f"- debits {_points(r.debits)}"
                )
            for r in await conn.execute(_UNCREDITED):
                if r.credited is None:
                    problems.append(f"order {r.number}: PROCESSED with points but never credited")
                else:
                    problems.append(
                        f"order {r.number}: accrual {_points(r.accrual)} for user {r.user_id}, "
                        f"credit {_points(r.credited)} to user {r.credited_user}"
                    )
            for r in await conn.execute(_ORPHAN_CREDITS):
                problems.append(
                    f"credit for order {r.order_number} (user {r.user_id}) has no PROCESSED order"
                )
        return ReconcileReport(counts.accounts, counts.processed, counts.entries, problems)
