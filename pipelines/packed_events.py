"""Events as single ``bytes`` values for the shuffle to the per-user step.

The local runner keeps every shuffled value in memory as a Python object until the step after the
shuffle has read it: an event as a tuple of four fields costs about 150 bytes there, one ``bytes``
value about 70. On Dataflow the packed form is also what the shuffle service stores.

Layout: ts (int64), weight (float64), user id length, item id length (uint32), event type length
(int32, -1 for none), then the three UTF-8 strings.
"""

from __future__ import annotations

import struct

from journeys.model import Event

_HEADER = struct.Struct("<qdIIi")


def pack(event: Event) -> bytes:
    user, item = event.user_id.encode(), event.item_id.encode()
    kind = b"" if event.event_type is None else event.event_type.encode()
    header = _HEADER.pack(event.ts, event.weight, len(user), len(item), -1 if event.event_type is None else len(kind))
    return header + user + item + kind


def user_of(packed: bytes) -> str:
    """The user id alone, without decoding the rest."""
    user_length = _HEADER.unpack_from(packed)[2]
    return packed[_HEADER.size:_HEADER.size + user_length].decode()


def unpack(packed: bytes) -> Event:
    ts, weight, user_length, item_length, kind_length = _HEADER.unpack_from(packed)
    start = _HEADER.size
    user = packed[start:start + user_length].decode()
    start += user_length
    item = packed[start:start + item_length].decode()
    start += item_length
    kind = None if kind_length < 0 else packed[start:start + kind_length].decode()
    return Event(user, item, ts, weight, kind)
