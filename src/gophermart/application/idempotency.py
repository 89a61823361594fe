"""Idempotency keys (SPEC "The ledger a shop runs on", "Idempotency keys"): a write sent
again with the same ``Idempotency-Key`` is answered what it was answered the first time,
and changes nothing.

The flow (the HTTP layer drives it, ``entrypoints/http/idempotency.py``): :meth:`claim`
the caller's key for the request's fingerprint; on ``NEW`` run the request, then
:meth:`complete` the key with its answer (a refusal such as ``402`` is an answer too),
or :meth:`abandon` it when the request failed without an answer (``5xx``: nothing was
changed, so a retry must run). A key is kept at least :data:`RETENTION`, then pruned by
the worker (:meth:`prune_until`).

A process that dies between committing a request's movement and storing its answer
leaves the key in progress: that request is never run twice (``409`` until the key is
pruned; the history shows what happened).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import timedelta
from functools import partial
from typing import Final

from gophermart.application.periodic import in_batches, repeat_until
from gophermart.application.ports import Claim, Clock, IdempotencyKeys
from gophermart.domain.errors import InvalidInput

log = logging.getLogger("gophermart.idempotency")

#: How long a key answers for its request at least (SPEC: 24 h).
RETENTION: Final = timedelta(hours=24)
#: The longest key (characters).
MAX_KEY: Final = 255
#: Keys deleted per statement while pruning.
PRUNE_BATCH: Final = 1000


def valid_key(key: str) -> str:
    """``key`` if it is 1 to 255 printable ASCII characters; :class:`InvalidInput`
    (``400``) otherwise."""
    if not 1 <= len(key) <= MAX_KEY or not all(" " <= c <= "~" for c in key):
        raise InvalidInput("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What tells one request from another under one key: SHA-256 (hex) of its method,
    path and raw body."""
    digest = hashlib.sha256(method.upper().encode("ascii"))
    digest.update(b"\n" + path.encode("utf-8", "surrogateescape") + b"\n")
    digest.update(body)
    return digest.hexdigest()


class Idempotency:
    """The keys' use case: the HTTP layer's claims and answers, and the worker's pruning."""

    def __init__(self, keys: IdempotencyKeys, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    async def claim(self, caller: str, key: str, fingerprint: str) -> Claim:
        """Claim ``caller``'s ``key`` (checked: :func:`valid_key`) for a request."""
        return await self._keys.claim(caller, valid_key(key), fingerprint, self._clock.now())

    async def complete(
        self, caller: str, key: str, status: int, body: bytes, content_type: str
    ) -> None:
        await self._keys.complete(caller, key, status, body, content_type)

    async def abandon(self, caller: str, key: str) -> None:
        await self._keys.abandon(caller, key)

    async def prune(self, batch: int = PRUNE_BATCH) -> int:
        """Delete every key older than :data:`RETENTION`, ``batch`` at a time; how many."""
        return await in_batches(partial(self._keys.prune, self._clock.now() - RETENTION), batch)

    async def prune_until(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """:meth:`prune` every ``every`` seconds until ``stop`` (the worker, beside the
        holds' sweep and at its cadence: with nothing to prune, one indexed range scan)."""
        await repeat_until(stop, every, self.prune, log, "pruning idempotency keys")
