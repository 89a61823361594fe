"""``Idempotency-Key`` on the write routes (SPEC "The ledger a shop runs on",
"Idempotency keys"): :func:`idempotent` wraps a route's handler.

Without the header the handler runs as it is (a shopper's write) or the request is
refused with ``400`` (an operator's): one scan of the ASGI headers (~0.4 us), nothing
else, so the hot writes pay next to nothing for keys they do not send. With one, the
caller's key (``user:42``, ``operator:ops``) is claimed for the request's fingerprint
(method, path, raw body):

* new: the handler runs, and its answer is stored, refusals (``402``, ``409``, ``422``
  ...) included, since they are answers too; a request that failed without one
  (``5xx``: the database was unavailable, a bug) abandons the key, so a retry runs;
* the same request answered before: its stored status, body and content type again,
  with ``Idempotent-Replayed: true``, and nothing changes;
* the same request still running: ``409``; another request under the key: ``422``.

It runs inside the handler, so every error keeps Litestar's handling and its
``{"error": ...}`` body. A process killed between committing a request's movement and
storing its answer leaves the key in progress: ``409`` until it is pruned (after 24 h),
never a second run (the history shows what happened).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

from litestar.response.base import ASGIResponse

from gophermart.application.idempotency import Idempotency, fingerprint
from gophermart.application.ports import ClaimOutcome
from gophermart.domain.errors import InvalidInput
from gophermart.entrypoints.http.auth import AnyRequest
from gophermart.entrypoints.http.errors import refusal
from gophermart.entrypoints.http.mount import mount_of
from gophermart.entrypoints.http.wire import Error, encoder

log = logging.getLogger("gophermart.http")

HEADER: Final = b"idempotency-key"
REPLAYED: Final = "Idempotent-Replayed"
REQUIRED: Final = "Idempotency-Key header required"
IN_PROGRESS: Final = "a request with this Idempotency-Key is still being processed"
MISMATCH: Final = "this Idempotency-Key was used with another request"
JSON: Final = "application/json"

Handler = Callable[..., Awaitable[ASGIResponse]]
H = TypeVar("H", bound=Handler)


def idempotent(caller: str, *, required: bool) -> Callable[[H], H]:
    """A route handler's decorator (under ``@post``): ``caller`` names the kind of
    principal (``user``, ``operator``) whose keys these are; ``required``: a request
    without the header is refused (``400``)."""

    def wrap(handler: H) -> H:
        @functools.wraps(handler)
        async def with_key(self: Any, request: AnyRequest, **kwargs: Any) -> ASGIResponse:
            key = _key_of(request.scope["headers"])
            if key is None:
                if required:
                    raise InvalidInput(REQUIRED)
                return await handler(self, request=request, **kwargs)
            run = functools.partial(handler, self, request=request, **kwargs)
            return await _once(run, request, f"{caller}:{request.user}", key)

        return with_key  # type: ignore[return-value]

    return wrap


def _key_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The header's value, read off the ASGI headers (lower-case names): no ``Headers``
    object is built for a request that sends none."""
    for name, value in headers:
        if name == HEADER:
            return value.decode("latin-1")
    return None


def _keys(request: AnyRequest) -> Idempotency:
    keys: Idempotency = mount_of(request).loyalty.container.idempotency()
    return keys


async def _once(
    run: Callable[[], Awaitable[ASGIResponse]], request: AnyRequest, caller: str, key: str
) -> ASGIResponse:
    keys = _keys(request)
    body = await request.body()
    claim = await keys.claim(caller, key, fingerprint(request.method, request.scope["path"], body))
    if claim.outcome is ClaimOutcome.REPLAY:
        return ASGIResponse(
            body=claim.body,
            status_code=claim.status,
            headers={"content-type": claim.content_type or JSON, REPLAYED: "true"},
        )
    if claim.outcome is ClaimOutcome.IN_PROGRESS:
        return _error(409, IN_PROGRESS)
    if claim.outcome is ClaimOutcome.MISMATCH:
        return _error(422, MISMATCH)
    try:
        answer = await run()
    except Exception as exc:
        refused = refusal(request, exc)
        if refused is None or (refused.status_code or 500) >= 500:
            await _abandon(keys, caller, key)
            raise
        answer = ASGIResponse(
            body=refused.content,
            status_code=refused.status_code,
            media_type=JSON,
            headers=refused.headers,
        )
    try:
        content_type = answer.headers.get("content-type") or JSON
        await keys.complete(caller, key, answer.status_code, answer.body, content_type)
    except Exception:  # the answer stands; the key stays in progress (409 until pruned)
        log.warning("the answer of %s's Idempotency-Key was not stored", caller, exc_info=True)
    return answer


async def _abandon(keys: Idempotency, caller: str, key: str) -> None:
    try:
        await keys.abandon(caller, key)
    except Exception:  # the request's own error is the one to answer
        log.warning("%s's Idempotency-Key could not be abandoned", caller, exc_info=True)


def _error(status: int, message: str) -> ASGIResponse:
    return ASGIResponse(body=encoder.encode(Error(message)), status_code=status, media_type=JSON)
