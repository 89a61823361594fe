"""Webhooks, the operators' side: register, list and delete endpoints, read an endpoint's
deliveries, deliver an event again (SPEC "Events"; the worker that delivers is
``webhook_delivery.py``).

An endpoint receives the events committed after it was registered, those its filter
matches. Its signing secret is made here and shown once, in what :meth:`Webhooks.add`
returns; the store keeps it (the worker signs with it), and no other verb returns it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial

from gophermart.application.events import PRUNE_BATCH, RETENTION
from gophermart.application.periodic import in_batches, repeat_until
from gophermart.application.ports import (
    Clock,
    DeliveryView,
    EventFeed,
    WebhookEndpoint,
    WebhookLag,
    WebhookStore,
)
from gophermart.domain.errors import InvalidInput
from gophermart.domain.events import EventsPruned
from gophermart.domain.webhooks import (
    MAX_ID,
    UnknownEvent,
    UnknownWebhook,
    event_filter,
    new_secret,
    valid_id,
    webhook_url,
)

log = logging.getLogger("gophermart.webhooks")

#: The longest page of deliveries one call returns.
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """A registered endpoint and its signing secret: the only time the secret is shown."""

    endpoint: WebhookEndpoint
    secret: str


class Webhooks:
    """``retention``: how long a delivered delivery is listed (the events' retention),
    and how long a deleted endpoint's deliveries are kept after its deletion."""

    def __init__(
        self,
        store: WebhookStore,
        feed: EventFeed,
        clock: Clock,
        retention: timedelta = RETENTION,
    ) -> None:
        self._store = store
        self._feed = feed
        self._clock = clock
        self._retention = retention

    async def prune(self, batch: int = PRUNE_BATCH) -> int:
        """Delete the deliveries done with for longer than the retention (delivered
        ones, and every one of an endpoint deleted that long ago); a live endpoint's
        failed deliveries are kept for an operator to replay. How many."""
        older_than = self._clock.now() - self._retention
        return await in_batches(partial(self._store.prune, older_than), batch)

    async def prune_until(self, stop: asyncio.Event, every: float = 60.0) -> None:
        """:meth:`prune` every ``every`` seconds until ``stop`` (the worker)."""
        await repeat_until(stop, every, self.prune, log, "pruning webhook deliveries")

    async def add_webhook(self, url: str, events: list[str]) -> NewWebhook:
        """Register an endpoint: ``url`` (http or https) receives, from now on, the
        events whose type ``events`` matches (types such as ``ledger.accrual``, families
        such as ``ledger.*``, or ``*``). Returns it with its signing secret, shown this
        once. Raises ``InvalidWebhook`` for a URL or a filter it would not deliver to."""
        valid_url, patterns = webhook_url(url), event_filter(events)
        secret = new_secret()
        cursor = await self._feed.last_id()
        endpoint = await self._store.add(valid_url, patterns, secret, cursor, self._clock.now())
        return NewWebhook(endpoint, secret)

    async def webhooks(self) -> list[WebhookEndpoint]:
        """Every endpoint, deleted ones too (``deleted_at`` set), without secrets."""
        return await self._store.endpoints()

    async def delete_webhook(self, endpoint_id: int) -> WebhookEndpoint:
        """Stop delivering to the endpoint (at once for new claims; a POST in flight
        finishes). Its deliveries stay listed. Deleting it again changes nothing.
        Raises ``UnknownWebhook``."""
        endpoint_id = valid_id(endpoint_id, UnknownWebhook, "an endpoint id")
        if not await self._store.delete(endpoint_id, self._clock.now()):
            raise UnknownWebhook(endpoint_id)
        endpoint = await self._store.endpoint(endpoint_id)
        assert endpoint is not None  # endpoints are never removed, only deleted
        return endpoint

    async def webhook_deliveries(
        self, endpoint_id: int, limit: int | None = None, before: int | None = None
    ) -> list[DeliveryView]:
        """The endpoint's deliveries, newest event first (``before``: an event id, the
        next page's cursor), each with its state (``pending``, ``delivered``,
        ``failed``), attempts and last outcome. Raises ``UnknownWebhook``."""
        endpoint_id = valid_id(endpoint_id, UnknownWebhook, "an endpoint id")
        if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_PAGE):
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}")
        if before is not None and (type(before) is not int or not 1 <= before <= MAX_ID):
            raise InvalidInput(f"before must be an event id, from 1 to {MAX_ID}")
        if await self._store.endpoint(endpoint_id) is None:
            raise UnknownWebhook(endpoint_id)
        return await self._store.deliveries(endpoint_id, limit or MAX_PAGE, before)

    async def redeliver_event(self, event_id: int) -> int:
        """Deliver the event again to every live endpoint it was delivered to or failed
        at: pending and due now, with a new retry window (a user's later events wait
        for it again). Returns how many deliveries of it are now pending. Raises
        ``UnknownEvent`` when no live endpoint ever had it."""
        event_id = valid_id(event_id, UnknownEvent, "an event id")
        pending = await self._store.redeliver(event_id, self._clock.now())
        if pending == 0:
            raise UnknownEvent(event_id)
        return pending

    async def webhook_lag(self) -> list[WebhookLag]:
        """Each live endpoint's backlog: pending deliveries and the events after its
        cursor (not streamed yet, whatever the filter), and when the oldest of them
        happened (the metrics' lag)."""
        last = await self._feed.last_id()
        lags = []
        for lag in await self._store.lag():
            oldest = lag.oldest_event_at
            if lag.cursor < last:
                try:
                    following = await self._feed.after(lag.cursor, 1)
                except EventsPruned:  # the worker skips them too, loudly
                    following = []
                if following and (oldest is None or following[0].at < oldest):
                    oldest = following[0].at
            unstreamed = max(0, last - lag.cursor)
            lags.append(replace(lag, pending=lag.pending + unstreamed, oldest_event_at=oldest))
        return lags

    async def keep_from(self) -> int | None:
        """The retention floor (the RetentionFloor port): the first event some live
        endpoint has not had recorded yet. Deliveries keep their own bytes, so an
        event already recorded may be pruned even if its delivery is pending."""
        lowest = await self._store.retained_after()
        return lowest + 1 if lowest is not None else None
