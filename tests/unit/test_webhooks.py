"""Webhooks' pure rules (domain/webhooks.py) and the delivery worker on the in-memory
store with a scripted feed and sender: order per user, retries, giving up, isolation
of a slow endpoint, the concurrency bound."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from gophermart.adapters.clock import SystemClock
from gophermart.adapters.event_wire import event_from_json, event_json
from gophermart.adapters.stores.memory.webhooks import MemoryWebhooks
from gophermart.application.ports import ClaimedDelivery
from gophermart.application.webhook_delivery import DeliveryConfig, WebhookDelivery
from gophermart.application.webhooks import Webhooks
from gophermart.domain.errors import InvalidInput
from gophermart.domain.events import Event
from gophermart.domain.users import UserId
from gophermart.domain.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Attempt,
    DeliveryPolicy,
    InvalidWebhook,
    Signer,
    UnknownEvent,
    UnknownWebhook,
    event_filter,
    matches,
    signature,
    verify,
    webhook_url,
)

# --- the rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8080/hook", "https://shop.example/a/b?c=d", "https://[::1]:9/x"],
)
def test_an_http_or_https_url_with_a_host_is_an_endpoint(url: str) -> None:
    assert webhook_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://shop.example/", "http"),
        ("shop.example/hook", "http"),
        ("http:///path", "host"),
        ("https://user:pw@shop.example/", "credentials"),
        ("https://shop.example/#frag", "fragment"),
        ("https://shop.example:99999/", "[Pp]ort"),
        ("https://shop.example:0/", "port"),
        ("https://shop.example/" + "a" * 2048, "2048"),
        ("https://shöp.example/", "ASCII"),
        (" https://shop.example/", "spaces"),
        ("https://shop.example/a b", "spaces"),
        (42, "text"),
    ],
)
def test_other_urls_are_refused_saying_why(url: object, why: str) -> None:
    with pytest.raises(InvalidWebhook, match=why):
        webhook_url(url)


def test_a_filter_takes_known_types_families_and_everything() -> None:
    assert event_filter(["ledger.accrual", "order.*", "ledger.accrual"]) == (
        "ledger.accrual",
        "order.*",
    )
    assert event_filter(["*"]) == ("*",)
    assert matches(("order.*",), "order.processed")
    assert matches(("*",), "ledger.hold")
    assert matches(("ledger.accrual",), "ledger.accrual")
    assert not matches(("ledger.accrual",), "ledger.accrual_reversal")
    assert not matches(("order.*",), "ledger.accrual")


@pytest.mark.parametrize(
    "events",
    [[], ["ledger.acrual"], ["order.new"], ["ledger"], ["led*"], ["*.*"], [1], "ledger.*", None],
)
def test_a_filter_with_an_unknown_type_or_nothing_is_refused(events: object) -> None:
    with pytest.raises(InvalidWebhook):
        event_filter(events)


def test_the_signature_is_hmac_sha256_of_the_timestamp_dot_body() -> None:
    body = b'{"id":1}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body, 1700000000) == f"t=1700000000,v1={expected}"
    header = signature("s3cret", body, 1700000000)
    assert verify("s3cret", body, header, now=1700000100)
    assert not verify("other", body, header, now=1700000100)
    assert not verify("s3cret", body + b" ", header, now=1700000100)
    assert not verify("s3cret", body, header, now=1700000000 + 301)  # too old: a replay
    assert not verify("s3cret", body, "v1=abc", now=1700000000)


def test_a_signer_signs_each_body_on_its_own() -> None:
    sign = Signer("s3cret")
    first, second = sign(b'{"id":1}', 1700000000), sign(b'{"id":2}', 1700000001)
    for body, at, header in [(b'{"id":1}', 1700000000, first), (b'{"id":2}', 1700000001, second)]:
        expected = hmac.new(b"s3cret", b"%d." % at + body, hashlib.sha256).hexdigest()
        assert header == f"t={at},v1={expected}"


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    policy = DeliveryPolicy(base=1.0, cap=60.0)
    assert policy.delay(1, lambda: 1.0) == 1.0
    assert policy.delay(3, lambda: 1.0) == 4.0
    assert policy.delay(3, lambda: 0.0) == 0.0  # full jitter: anywhere from zero
    assert policy.delay(3, lambda: 0.5) == 2.0
    assert policy.delay(10**6, lambda: 1.0) == 60.0  # capped, and no overflow


def test_retries_stop_when_the_window_from_the_first_attempt_is_spent() -> None:
    policy = DeliveryPolicy(retry_for=timedelta(hours=24), base=1.0, cap=600.0)
    first = datetime(2026, 12, 7, tzinfo=UTC)
    assert policy.next_try(first, first + timedelta(hours=1), 5, lambda: 1.0) is not None
    assert policy.next_try(first, first + timedelta(hours=24), 5, lambda: 0.0) is None
    late = first + timedelta(hours=23, minutes=59)
    assert policy.next_try(first, late, 20, lambda: 1.0) is None  # the retry would be past it


# --- the worker, on the memory store ---------------------------------------------------


class ScriptedFeed:
    """An EventFeed over a list."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._news = asyncio.Event()

    def publish(self, user_id: int, kind: str = "ledger.accrual", n: int = 1) -> None:
        for _ in range(n):
            data = {"amount": str(len(self.events) + 1)}
            at = datetime.now(UTC)
            self.events.append(Event(len(self.events) + 1, kind, UserId(user_id), at, data))
        self._news.set()

    async def after(self, cursor: int, limit: int) -> Sequence[Event]:
        return [e for e in self.events if e.id > cursor][:limit]

    async def last_id(self) -> int:
        return self.events[-1].id if self.events else 0

    async def wait(self, cursor: int, timeout: float) -> None:
        if await self.last_id() > cursor:
            return
        self._news.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._news.wait(), timeout)


class ScriptedSender:
    """Answers per endpoint: a status, or a delay; records what was received."""

    def __init__(self) -> None:
        self.received: dict[int, list[tuple[int, bytes, dict[str, str]]]] = {}
        self.status: dict[int, int] = {}
        self.delay: dict[int, float] = {}
        self.in_flight: dict[int, int] = {}
        self.most_in_flight: dict[int, int] = {}

    async def post(
        self, endpoint_id: int, url: str, body: bytes, headers: dict[str, str]
    ) -> Attempt:
        now = self.in_flight[endpoint_id] = self.in_flight.get(endpoint_id, 0) + 1
        self.most_in_flight[endpoint_id] = max(self.most_in_flight.get(endpoint_id, 0), now)
        try:
            await asyncio.sleep(self.delay.get(endpoint_id, 0.0))
            status = self.status.get(endpoint_id, 200)
            if status == 200:
                event_id = int(headers[EVENT_ID_HEADER])
                self.received.setdefault(endpoint_id, []).append((event_id, body, headers))
                return Attempt(200)
            return Attempt(status, f"HTTP {status}", f"http_{status // 100}xx")
        finally:
            self.in_flight[endpoint_id] -= 1

    async def forget(self, endpoint_id: int) -> None:
        return None

    def event_ids(self, endpoint_id: int) -> list[int]:
        return [event_id for event_id, _, _ in self.received.get(endpoint_id, [])]


class Rig:
    def __init__(self, **policy: float) -> None:
        self.store = MemoryWebhooks()
        self.feed = ScriptedFeed()
        self.sender = ScriptedSender()
        clock = SystemClock()
        self.webhooks = Webhooks(self.store, self.feed, clock)
        retry_for = timedelta(seconds=policy.pop("retry_for", 60.0))
        config = DeliveryConfig(
            DeliveryPolicy(retry_for=retry_for, base=0.01, cap=0.05, **policy),
            concurrency=4,
            batch=50,
            idle=0.02,
        )
        self.worker = WebhookDelivery(self.store, self.feed, self.sender, clock, event_json, config)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Rig:
        self.task = asyncio.create_task(self.worker.run_until(self.stop))
        return self

    async def __aexit__(self, *_: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)


async def _until(check: object, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_each_subscribed_event_is_posted_signed_with_its_id_from_registration_on() -> None:
    rig = Rig()
    rig.feed.publish(1)  # before the endpoint: never sent to it
    new = await rig.webhooks.add_webhook("http://hooks.test/a", ["ledger.*"])
    async with rig:
        rig.feed.publish(1, "ledger.accrual")
        rig.feed.publish(2, "order.processed")  # not subscribed
        rig.feed.publish(2, "ledger.withdrawal")
        await _until(lambda: len(rig.sender.event_ids(new.endpoint.id)) == 2)
    received = rig.sender.received[new.endpoint.id]
    assert [event_id for event_id, _, _ in received] == [2, 4]
    for event_id, body, headers in received:
        assert event_from_json(body).id == event_id
        assert body == event_json(rig.feed.events[event_id - 1])  # exactly the wire form
        assert headers["Content-Type"] == "application/json"
        at = int(headers[SIGNATURE_HEADER].split(",")[0][2:])
        assert verify(new.secret, body, headers[SIGNATURE_HEADER], now=at)
    views = await rig.webhooks.webhook_deliveries(new.endpoint.id)
    assert [(v.event_id, v.state, v.attempts) for v in views] == [
        (4, "delivered", 1),
        (2, "delivered", 1),
    ]


async def test_a_users_later_event_waits_for_the_earlier_one_across_retries() -> None:
    rig = Rig()
    new = await rig.webhooks.add_webhook("http://hooks.test/a", ["*"])
    endpoint = new.endpoint.id
    rig.sender.status[endpoint] = 503  # down
    async with rig:
        for user in (1, 2, 1, 3, 2, 1):
            rig.feed.publish(user)
        await _until(lambda: len(rig.store._deliveries[endpoint]) == 6)
        await asyncio.sleep(0.2)  # several failed rounds
        assert rig.sender.received.get(endpoint) is None
        del rig.sender.status[endpoint]  # back
        await _until(lambda: len(rig.sender.event_ids(endpoint)) == 6)
    ids = rig.sender.event_ids(endpoint)
    by_user: dict[int, list[int]] = {}
    for event_id in ids:
        by_user.setdefault(int(rig.feed.events[event_id - 1].user_id), []).append(event_id)
    assert by_user == {1: [1, 3, 6], 2: [2, 5], 3: [4]}
    views = {v.event_id: v for v in await rig.webhooks.webhook_deliveries(endpoint)}
    assert all(v.state == "delivered" for v in views.values())
    # Each user's first event was retried while the endpoint was down; the later ones
    # waited behind it and were never sent before it got through.
    assert all(views[first].attempts > 1 for first in (1, 2, 4))
    assert all(views[later].attempts == 1 for later in (3, 5, 6))


async def test_a_delivery_fails_for_good_after_its_window_and_redeliver_sends_it_again() -> None:
    rig = Rig(retry_for=0.3)
    new = await rig.webhooks.add_webhook("http://hooks.test/a", ["*"])
    endpoint = new.endpoint.id
    rig.sender.status[endpoint] = 500
    async with rig:
        rig.feed.publish(1)
        rig.feed.publish(1)
        await _until(lambda: len(rig.store._deliveries[endpoint]) == 2)

        async def states() -> list[str]:
            return [v.state for v in await rig.webhooks.webhook_deliveries(endpoint)]

        for _ in range(300):
            if await states() == ["failed", "failed"]:
                break
            await asyncio.sleep(0.01)
        assert await states() == ["failed", "failed"]  # the later one was let go after
        del rig.sender.status[endpoint]
        assert await rig.webhooks.redeliver_event(1) == 1
        await _until(lambda: rig.sender.event_ids(endpoint) == [1])
        assert await states() == ["failed", "delivered"]
    with pytest.raises(UnknownEvent):
        await rig.webhooks.redeliver_event(99)


async def test_a_slow_endpoint_does_not_delay_another() -> None:
    rig = Rig(deadline=5.0)
    slow = (await rig.webhooks.add_webhook("http://slow.test/", ["*"])).endpoint.id
    fast = (await rig.webhooks.add_webhook("http://fast.test/", ["*"])).endpoint.id
    rig.sender.delay[slow] = 1.5
    async with rig:
        started = asyncio.get_running_loop().time()
        for user in range(10):
            rig.feed.publish(user)
        await _until(lambda: len(rig.sender.event_ids(fast)) == 10, seconds=2.0)
        took = asyncio.get_running_loop().time() - started
        assert took < 1.0, took
        assert rig.sender.most_in_flight[slow] <= 4  # its concurrency, no more
        rig.stop.set()  # the slow POSTs in flight finish before the worker stops
    assert rig.sender.most_in_flight[fast] <= 4


async def test_a_deleted_endpoint_gets_nothing_more_and_keeps_its_history() -> None:
    rig = Rig()
    new = await rig.webhooks.add_webhook("http://hooks.test/a", ["*"])
    endpoint = new.endpoint.id
    async with rig:
        rig.feed.publish(1)
        await _until(lambda: rig.sender.event_ids(endpoint) == [1])
        deleted = await rig.webhooks.delete_webhook(endpoint)
        assert deleted.deleted_at is not None
        assert (await rig.webhooks.delete_webhook(endpoint)).deleted_at == deleted.deleted_at
        rig.feed.publish(1)
        await asyncio.sleep(0.2)
    assert rig.sender.event_ids(endpoint) == [1]
    assert [v.event_id for v in await rig.webhooks.webhook_deliveries(endpoint)] == [1]
    assert await rig.webhooks.keep_from() is None  # no live endpoint needs old events
    with pytest.raises(UnknownWebhook):
        await rig.webhooks.delete_webhook(99)
    with pytest.raises(UnknownWebhook):
        await rig.webhooks.webhook_deliveries(99)
    with pytest.raises(InvalidInput):
        await rig.webhooks.webhook_deliveries(endpoint, limit=0)


async def test_the_retention_floor_is_the_first_event_not_recorded_yet() -> None:
    rig = Rig()
    rig.feed.publish(1, n=3)
    await rig.webhooks.add_webhook("http://hooks.test/a", ["*"])
    assert await rig.webhooks.keep_from() == 4  # registered after event 3
    async with rig:
        rig.feed.publish(1, n=2)
        await _until(lambda: rig.store._endpoints[1].cursor == 5)
    assert await rig.webhooks.keep_from() == 6
    lag = await rig.webhooks.webhook_lag()
    assert [(x.endpoint_id, x.pending) for x in lag] == [(1, 0)]


class CountingStore(MemoryWebhooks):
    """The memory store, counting the deliveries its claims hand out."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed = 0

    async def claim(self, *args: object, **kwargs: object) -> list[ClaimedDelivery]:
        claimed = await super().claim(*args, **kwargs)  # type: ignore[arg-type]
        self.claimed += len(claimed)
        return claimed


def _second_worker(rig: Rig) -> WebhookDelivery:
    """Another worker process on the same store, feed and sender."""
    first = rig.worker
    return WebhookDelivery(rig.store, rig.feed, rig.sender, first.clock, first.encode, first.config)


async def test_two_workers_send_each_event_once_from_the_stream_with_nothing_queued() -> None:
    rig = Rig()
    rig.store = rig.worker.store = CountingStore()  # type: ignore[misc]
    rig.webhooks = Webhooks(rig.store, rig.feed, rig.worker.clock)
    endpoint = (await rig.webhooks.add_webhook("http://hooks.test/a", ["*"])).endpoint.id
    other, stop_other = _second_worker(rig), asyncio.Event()
    async with rig:
        running = asyncio.create_task(other.run_until(stop_other))
        for k in range(120):
            rig.feed.publish(k % 7)
        await _until(lambda: len(rig.store._deliveries[endpoint]) == 120)
        stop_other.set()
        await running
    # One process streams the endpoint: each event POSTed once, recorded once, delivered
    # on its first try; the queue's claims never had anything to hand out.
    assert sorted(rig.sender.event_ids(endpoint)) == list(range(1, 121))
    views = await rig.webhooks.webhook_deliveries(endpoint)
    assert {(v.state, v.attempts) for v in views} == {("delivered", 1)}
    assert rig.store.claimed == 0


async def test_a_stopping_worker_gives_its_stream_up_to_another_at_once() -> None:
    rig = Rig()  # a lease of 15 s: waiting for it to run out would time the test out
    endpoint = (await rig.webhooks.add_webhook("http://hooks.test/a", ["*"])).endpoint.id
    async with rig:
        rig.feed.publish(1)
        await _until(lambda: rig.sender.event_ids(endpoint) == [1])
    assert rig.store._endpoints[endpoint].stream_owner == rig.worker.owner
    other, stop_other = _second_worker(rig), asyncio.Event()
    running = asyncio.create_task(other.run_until(stop_other))
    rig.feed.publish(2)
    await _until(lambda: rig.sender.event_ids(endpoint) == [1, 2], seconds=2.0)
    assert rig.store._endpoints[endpoint].stream_owner == other.owner
    stop_other.set()
    await running


async def test_a_failed_first_try_queues_the_users_later_events_behind_it() -> None:
    rig = Rig()
    endpoint = (await rig.webhooks.add_webhook("http://hooks.test/a", ["*"])).endpoint.id
    async with rig:
        rig.feed.publish(1)
        await _until(lambda: rig.sender.event_ids(endpoint) == [1])
        rig.sender.status[endpoint] = 503
        rig.feed.publish(2)  # event 2: its first try fails
        await _until(lambda: 2 in rig.store._deliveries[endpoint])
        rig.feed.publish(2, n=2)  # 3 and 4: queued behind it, not tried
        rig.feed.publish(3)  # 5: the endpoint is failing, recorded untried
        await _until(lambda: len(rig.store._deliveries[endpoint]) == 5)
        assert rig.sender.event_ids(endpoint) == [1]
        del rig.sender.status[endpoint]
        await _until(lambda: len(rig.sender.event_ids(endpoint)) == 5)
        rig.feed.publish(2)  # 6: user 2's queue is empty again, sent from the stream
        await _until(lambda: len(rig.sender.event_ids(endpoint)) == 6)
    ids = rig.sender.event_ids(endpoint)
    assert [i for i in ids if rig.feed.events[i - 1].user_id == 2] == [2, 3, 4, 6]
    views = {v.event_id: v for v in await rig.webhooks.webhook_deliveries(endpoint)}
    assert views[2].attempts >= 2 and views[3].attempts == 1 and views[6].attempts == 1
