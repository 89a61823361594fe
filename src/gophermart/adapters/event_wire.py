"""An event's one JSON form: ``{"id","type","user_id","at","data"}``.

The library's feed hands hosts :class:`~gophermart.domain.events.Event` objects; the
webhooks POST exactly :func:`event_json`'s bytes (and sign them), and a receiver (or
a test) reads them back with :func:`event_from_json`. ``at`` is RFC 3339 UTC; points
in ``data`` are exact decimal strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from gophermart.domain.events import Event, EventValue
from gophermart.domain.users import UserId


class EventBody(msgspec.Struct, frozen=True):
    """The wire form, field for field."""

    id: int
    type: str
    user_id: int
    at: datetime
    data: dict[str, EventValue]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(EventBody)


def event_json(event: Event) -> bytes:
    return _encoder.encode(
        EventBody(event.id, event.type, event.user_id, event.at, dict(event.data))
    )


def event_from_json(body: bytes | str) -> Event:
    """The event of a body :func:`event_json` wrote (``msgspec.ValidationError`` or
    ``msgspec.DecodeError`` for anything else)."""
    wire = _decoder.decode(body)
    return Event(wire.id, wire.type, UserId(wire.user_id), wire.at, wire.data)


def event_dict(event: Event) -> dict[str, Any]:
    """The wire form as plain JSON values (an HTTP listing embeds it as it is)."""
    decoded: dict[str, Any] = msgspec.json.decode(event_json(event))
    return decoded
