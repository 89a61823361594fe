"""Reconciliation: does every stored balance agree with the ledger?

Operators run ``gophermart reconcile`` after incidents; the tests run it after every
concurrency scenario. The account figures are a cache of the ledger, so any
difference is a bug (or a hand edit), never a rounding matter: amounts are integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    accounts: int
    processed_orders: int
    ledger_entries: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (
            f"{self.accounts} accounts, {self.processed_orders} processed orders, "
            f"{self.ledger_entries} ledger entries: "
        )
        if self.ok:
            return head + "all balances match the ledger; every credit is accounted for"
        return (
            head
            + f"{len(self.problems)} problem(s)\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


class LedgerAudit(Protocol):
    async def reconcile(self) -> ReconcileReport:
        """Checks, for every user, balance == credits - debits and withdrawn == debits;
        for every PROCESSED order with points, exactly one matching credit; and that no
        credit exists without its PROCESSED order."""
        ...
