"""Reconciliation: does every stored balance agree with the ledger?

Operators run ``gophermart reconcile`` after incidents; the tests run it after every
concurrency scenario. The account figures are a cache of the ledger, so any
difference is a bug (or a hand edit), never a rounding matter: amounts are integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gophermart.domain.points import Points


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


#: An account's figures, in the order the audits read them.
FIGURES = ("balance", "withdrawn", "held", "owed")


def figures_differ(
    user_id: object, stored: Sequence[int], summed: Sequence[int], in_holds: int
) -> str:
    """The problem line of an account whose figures (hundredths, in FIGURES' order) are
    not what its ledger entries add up to, or whose held points are not its open
    holds': only what differs, each store's audit wording it alike."""
    parts = [
        f"{name} {_points(a)} but its entries add up to {_points(b)}"
        for name, a, b in zip(FIGURES, stored, summed, strict=True)
        if a != b
    ]
    if stored[2] != in_holds:
        parts.append(f"held {_points(stored[2])} but its open holds add up to {_points(in_holds)}")
    return f"user {user_id}: " + "; ".join(parts)


def _points(cents: int) -> str:
    """Hundredths as points; a negative sum (a corrupt ledger) is shown, not refused."""
    return f"-{Points(-int(cents))}" if cents < 0 else str(Points(int(cents)))


class LedgerAudit(Protocol):
    async def reconcile(self) -> ReconcileReport:
        """Checks, for every user, that each figure is what the ledger entries add up to
        (balance, withdrawn, held, owed) and held is the open holds'; for every
        PROCESSED order with points, exactly one matching credit, no credit without its
        PROCESSED order, reversals as the order counts them; no withdrawal refunded beyond
        itself; and every hold's entries as its state says."""
        ...
