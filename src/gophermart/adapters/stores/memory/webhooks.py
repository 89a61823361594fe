"""Webhook endpoints and deliveries in one process's memory (the in-memory store's).

The same rules as the SQL tables (``stores/sql/webhooks.py``): one owner streams an
endpoint at a time and settles by compare-and-set on the cursor, a claim takes each
user's oldest pending delivery that is due, an outcome is written only by the claim
that made it. No ``await`` between a
look-up and a write: each method is atomic on the event loop.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gophermart.application.ports import (
    ClaimedDelivery,
    DeliveryTarget,
    DeliveryView,
    NewDelivery,
    WebhookEndpoint,
    WebhookLag,
)
from gophermart.domain.webhooks import DeliveryState

_PENDING = DeliveryState.PENDING.value


@dataclass(slots=True)
class _Endpoint:
    view: WebhookEndpoint
    secret: str
    cursor: int
    stream_owner: str | None = None
    stream_until: datetime | None = None


@dataclass(slots=True)
class _Delivery:
    id: int
    endpoint_id: int
    new: NewDelivery
    created_at: datetime
    state: str = _PENDING
    attempts: int = 0
    failures: int = 0
    next_attempt_at: datetime | None = None
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None

    def view(self) -> DeliveryView:
        return DeliveryView(
            self.new.event_id,
            self.new.event_type,
            self.new.user_id,
            self.state,
            self.attempts,
            self.created_at,
            self.last_attempt_at,
            self.last_status,
            self.last_error,
            self.next_attempt_at,
            self.delivered_at,
        )


class MemoryWebhooks:
    """The WebhookStore port in memory."""

    def __init__(self) -> None:
        self._endpoints: dict[int, _Endpoint] = {}
        #: Per endpoint, its deliveries by event id (inserted in event order).
        self._deliveries: dict[int, dict[int, _Delivery]] = {}
        self._next_id = 0

    def _live(self) -> list[_Endpoint]:
        return [e for e in self._endpoints.values() if e.view.deleted_at is None]

    async def add(
        self, url: str, events: tuple[str, ...], secret: str, cursor: int, at: datetime
    ) -> WebhookEndpoint:
        view = WebhookEndpoint(len(self._endpoints) + 1, url, events, at)
        self._endpoints[view.id] = _Endpoint(view, secret, cursor)
        self._deliveries[view.id] = {}
        return view

    async def endpoints(self) -> list[WebhookEndpoint]:
        return [e.view for e in self._endpoints.values()]

    async def endpoint(self, endpoint_id: int) -> WebhookEndpoint | None:
        found = self._endpoints.get(endpoint_id)
        return found.view if found is not None else None

    async def delete(self, endpoint_id: int, at: datetime) -> bool:
        found = self._endpoints.get(endpoint_id)
        if found is None:
            return False
        if found.view.deleted_at is None:
            found.view = replace(found.view, deleted_at=at)
        return True

    async def targets(self) -> list[DeliveryTarget]:
        return [
            DeliveryTarget(e.view.id, e.view.url, e.view.events, e.secret) for e in self._live()
        ]

    async def stream(
        self, endpoint_id: int, owner: str, now: datetime, until: datetime
    ) -> int | None:
        found = self._endpoints.get(endpoint_id)
        if found is None or found.view.deleted_at is not None:
            return None
        taken = found.stream_owner not in (None, owner)
        if taken and found.stream_until is not None and found.stream_until > now:
            return None  # another process holds it and its lease runs
        found.stream_owner, found.stream_until = owner, until
        return found.cursor

    async def queued(self, endpoint_id: int, user_ids: Collection[int]) -> set[int]:
        wanted = set(user_ids)
        return {
            d.new.user_id
            for d in self._deliveries.get(endpoint_id, {}).values()
            if d.state == _PENDING and d.new.user_id in wanted
        }

    async def settle(
        self,
        endpoint_id: int,
        owner: str,
        seen: int,
        upto: int,
        deliveries: Sequence[NewDelivery],
        at: datetime,
        until: datetime,
    ) -> bool:
        found = self._endpoints.get(endpoint_id)
        if found is None or found.stream_owner != owner or found.cursor != seen:
            return False
        found.cursor, found.stream_until = upto, until
        queue = self._deliveries[endpoint_id]
        for new in deliveries:
            self._next_id += 1
            r = new.recorded(at)
            queue[new.event_id] = _Delivery(
                self._next_id,
                endpoint_id,
                new,
                at,
                r.state,
                r.attempts,
                r.failures,
                r.next_attempt_at,
                r.tried_at,
                r.tried_at,
                r.last_status,
                r.last_error,
                r.delivered_at,
            )
        return True

    async def claim(
        self, endpoint_id: int, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        return self._claim(endpoint_id, now, lease_until, limit)

    def _claim(
        self,
        endpoint_id: int,
        now: datetime,
        lease_until: datetime,
        limit: int,
        user: int | None = None,
    ) -> list[ClaimedDelivery]:
        claimed: list[ClaimedDelivery] = []
        waiting: set[int] = set()  # users with an earlier pending delivery
        for delivery in sorted(self._deliveries.get(endpoint_id, {}).values(), key=_event_id):
            if len(claimed) >= limit:
                break
            if delivery.state != _PENDING or user not in (None, delivery.new.user_id):
                continue
            owner = delivery.new.user_id
            due = delivery.next_attempt_at is not None and delivery.next_attempt_at <= now
            if due and owner not in waiting:
                delivery.attempts += 1
                delivery.first_attempt_at = delivery.first_attempt_at or now
                delivery.last_attempt_at = now
                delivery.next_attempt_at = lease_until
                claimed.append(_claimed(delivery))
            waiting.add(owner)
        return claimed

    async def record(
        self,
        claimed: ClaimedDelivery,
        state: str,
        at: datetime,
        next_at: datetime | None,
        status: int | None,
        error: str | None,
        lease_until: datetime | None = None,
    ) -> ClaimedDelivery | None:
        delivery = self._deliveries.get(claimed.endpoint_id, {}).get(claimed.event_id)
        if delivery is None or delivery.id != claimed.id:
            return None
        if delivery.attempts != claimed.attempts or delivery.state != _PENDING:
            return None  # claimed again since: that claim's outcome is the one to keep
        delivered = state == DeliveryState.DELIVERED.value
        delivery.state, delivery.next_attempt_at = state, next_at
        delivery.last_status, delivery.last_error = status, error
        delivery.failures += 0 if delivered else 1
        if delivered:
            delivery.delivered_at = at
        if lease_until is None or state == _PENDING:
            return None
        following = self._claim(claimed.endpoint_id, at, lease_until, 1, claimed.user_id)
        return following[0] if following else None

    async def deliveries(
        self, endpoint_id: int, limit: int, before: int | None
    ) -> list[DeliveryView]:
        queue = self._deliveries.get(endpoint_id, {})
        chosen = [e for e in sorted(queue, reverse=True) if before is None or e < before]
        return [queue[e].view() for e in chosen[:limit]]

    async def redeliver(self, event_id: int, now: datetime) -> int:
        pending = 0
        for endpoint in self._live():
            delivery = self._deliveries[endpoint.view.id].get(event_id)
            if delivery is None:
                continue
            if delivery.state != _PENDING:
                delivery.state, delivery.next_attempt_at = _PENDING, now
                delivery.failures, delivery.first_attempt_at, delivery.delivered_at = 0, None, None
            pending += 1
        return pending

    async def lag(self) -> list[WebhookLag]:
        lags = []
        for endpoint in self._live():
            pending = [
                d.new.event_at
                for d in self._deliveries[endpoint.view.id].values()
                if d.state == _PENDING
            ]
            oldest = min(pending, default=None)
            lags.append(WebhookLag(endpoint.view.id, len(pending), oldest, endpoint.cursor))
        return lags

    async def prune(self, older_than: datetime, limit: int) -> int:
        pruned = 0
        for endpoint_id, deliveries in self._deliveries.items():
            deleted_at = self._endpoints[endpoint_id].view.deleted_at
            gone = deleted_at is not None and deleted_at < older_than
            for event_id, delivery in list(deliveries.items()):
                done = delivery.delivered_at is not None and delivery.delivered_at < older_than
                if pruned < limit and (gone or (done and delivery.state != _PENDING)):
                    del deliveries[event_id]
                    pruned += 1
        return pruned

    async def retained_after(self) -> int | None:
        return min((e.cursor for e in self._live()), default=None)


def _event_id(delivery: _Delivery) -> int:
    return delivery.new.event_id


def _claimed(delivery: _Delivery) -> ClaimedDelivery:
    assert delivery.first_attempt_at is not None
    return ClaimedDelivery(
        delivery.id,
        delivery.endpoint_id,
        delivery.new.event_id,
        delivery.new.user_id,
        delivery.new.body,
        delivery.attempts,
        delivery.failures,
        delivery.first_attempt_at,
    )
