"""The listings' shared shape on the wire: ``?limit=`` and ``?before=`` pages, and the
whole list read and rendered a chunk at a time (``Queries.CHUNK``): a first chunk
answers most users in one go; a longer list is streamed, so that 300,000 rows never hold
the event loop (SPEC: one slow thing stays one slow thing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

from litestar.params import QueryParameter
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from gophermart.application.queries import Queries
from gophermart.entrypoints.http.controllers.common import (
    JSON,
    empty_response,
    error_doc,
    json_response,
)

V = TypeVar("V")

PageLimit = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        le=Queries.MAX_LIMIT,
        description="At most this many (a page); all of them without it.",
    ),
]
PageBefore = Annotated[
    str | None,
    QueryParameter(
        description=(
            "Only those listed after this one: the order number of the last one of the "
            "previous page. With `limit`, the next page."
        ),
    ),
]
BAD_PAGE = error_doc(
    "`limit` outside 1..10000 or not in plain digits, `before` not an order number, or a "
    "parameter given twice",
    "limit must be between 1 and 10000",
)

#: A listing's next chunk: (limit, before) -> views.
Fetch = Callable[[int, "str | None"], Awaitable[Sequence[V]]]


async def listing_response(
    fetch: Fetch[V],
    limit: int | None,
    before: str | None,
    render: Callable[[Sequence[V]], bytes],
    number: Callable[[V], str],
) -> ASGIResponse:
    """``204`` for nothing; a page, or a whole list that fits a chunk, as one body; a
    longer whole list streamed, each chunk read after the last number of the one
    before."""
    first = await fetch(limit or Queries.CHUNK, before)
    if not first:
        return empty_response(204)
    if limit is not None or len(first) < Queries.CHUNK:
        return json_response(render(first))
    return ASGIStreamingResponse(iterator=_stream(fetch, first, render, number), media_type=JSON)


async def _stream(
    fetch: Fetch[V],
    first: Sequence[V],
    render: Callable[[Sequence[V]], bytes],
    number: Callable[[V], str],
) -> AsyncIterator[bytes]:
    """The JSON array of every row, a chunk at a time: ``[`` + the first chunk's items,
    then ``,`` + each next chunk's."""
    chunk, opening = first, b"["
    while chunk:
        yield opening + render(chunk)[1:-1]
        opening = b","
        if len(chunk) < Queries.CHUNK:
            break
        chunk = await fetch(Queries.CHUNK, number(chunk[-1]))
    yield b"]"
