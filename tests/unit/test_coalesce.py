"""The coalescer of PostgreSQL's hot reads: one query per event-loop turn, each
waiter its own answer, a failed query failing its own batch only."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from gophermart.adapters.stores.postgres.coalesce import Coalescer


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    async def run(self, keys: Sequence[int]) -> Mapping[int, str]:
        self.batches.append(list(keys))
        await asyncio.sleep(0)
        if self.fail_on is not None and self.fail_on in keys:
            raise RuntimeError("query failed")
        return {k: f"v{k}" for k in keys if k % 10 != 9}  # keys ending in 9 are absent


async def test_the_reads_of_one_turn_share_one_query_and_each_gets_its_own_answer() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run)
    answers = await asyncio.gather(*(coalescer.get(k) for k in [1, 2, 1, 9, 3]))
    assert answers == ["v1", "v2", "v1", None, "v3"]
    assert recorder.batches == [[1, 2, 9, 3]]  # once per key, in arrival order


async def test_a_read_alone_is_answered_at_once_and_later_turns_get_their_own_query() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run)
    assert await coalescer.get(5) == "v5"
    first = asyncio.gather(coalescer.get(6), coalescer.get(7))
    await asyncio.sleep(0)  # the first batch is sent; these arrive in a later turn
    second = asyncio.gather(coalescer.get(8))
    assert await first == ["v6", "v7"] and await second == ["v8"]
    assert recorder.batches == [[5], [6, 7], [8]]


async def test_a_failed_query_fails_its_batch_only() -> None:
    recorder = Recorder(fail_on=13)
    coalescer = Coalescer(recorder.run)
    doomed = asyncio.gather(coalescer.get(12), coalescer.get(13), return_exceptions=True)
    await asyncio.sleep(0)
    fine = asyncio.gather(coalescer.get(14))
    results = await doomed
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await fine == ["v14"]


async def test_a_cancelled_waiter_leaves_the_others_their_answers() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run)
    gone = asyncio.ensure_future(coalescer.get(21))
    kept = asyncio.ensure_future(coalescer.get(22))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == "v22"
    with pytest.raises(asyncio.CancelledError):
        await gone
