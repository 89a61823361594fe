"""The in-memory store's data: what a database would hold, and the lock that serialises
its units of work."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from gophermart.adapters.stores import Signal
from gophermart.domain.accounts import EntryKind, Hold, LedgerEntry
from gophermart.domain.events import Event, EventData
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


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event written by a unit of work, not numbered yet (its id is given at commit,
    under the store's lock: commit order)."""

    type: str
    user_id: UserId
    at: datetime
    data: EventData


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
    #: The events of this unit of work, numbered when it commits (memory/events.py).
    new_events: list[NewEvent] = field(default_factory=list)


class MemoryDatabase:
    """The committed state plus the lock that serialises units of work."""

    def __init__(self) -> None:
        self.state = MemoryState()
        self.lock = asyncio.Lock()
        #: Set by tests to make the next commit fail, as a crash or lost connection would.
        self.fail_next_commit = False
        #: The feed: committed events in id order, kept outside ``state`` (which every
        #: unit of work copies), and what retention deleted of it (memory/events.py).
        self.events: list[Event] = []
        self.last_event_id = 0
        self.pruned_through = 0
        self.published = Signal()

    def publish(self, state: MemoryState) -> None:
        """Commit ``state``: its new events numbered after every committed one."""
        for new in state.new_events:
            self.last_event_id += 1
            self.events.append(Event(self.last_event_id, new.type, new.user_id, new.at, new.data))
        if state.new_events:
            state.new_events.clear()
            self.published.set()
        self.state = state
