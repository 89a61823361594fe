"""The in-memory store's data: what a database would hold, and the lock that serialises
its units of work."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from gophermart.domain.accounts import EntryKind, Hold, LedgerEntry
from gophermart.domain.orders import Order
from gophermart.domain.users import User, UserId


@dataclass(slots=True)
class QueuedOrder:
    order: Order
    next_attempt_at: datetime | None
    attempts: int = 0
    seq: int = 0
    open_claims: int = 0  # as the SQL column: claims not yet ended by save/reschedule
    reversed: int = 0  # hundredths of the accrual that reversals took back
    parked: str | None = None  # as the SQL column: why the worker parked it


@dataclass(slots=True)
class MemoryState:
    users: dict[UserId, User] = field(default_factory=dict)
    logins: dict[str, UserId] = field(default_factory=dict)
    orders: dict[str, QueuedOrder] = field(default_factory=dict)
    balances: dict[UserId, tuple[int, int]] = field(default_factory=dict)  # (balance, withdrawn)
    held_owed: dict[UserId, tuple[int, int]] = field(default_factory=dict)  # (held, owed)
    #: Every entry by id, in the order written (the SQL ledger's ids)...
    ledger: dict[int, LedgerEntry] = field(default_factory=dict)
    #: ... and the accruals and withdrawals by order: once per order, ever.
    once: dict[tuple[EntryKind, str], LedgerEntry] = field(default_factory=dict)
    holds: dict[int, Hold] = field(default_factory=dict)
    next_id: int = 1
    next_entry_id: int = 1


class MemoryDatabase:
    """The committed state plus the lock that serialises units of work."""

    def __init__(self) -> None:
        self.state = MemoryState()
        self.lock = asyncio.Lock()
        #: Set by tests to make the next commit fail, as a crash or lost connection would.
        self.fail_next_commit = False
