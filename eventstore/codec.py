"""Values to bytes and back: the msgpack commit payload ([F-08], [F-09]).

`encode_commit` turns a commit's validated events into its payload with one
msgpack call (the store calls it outside its lock); the payload is the
concatenation of each event's `encode_event` bytes behind an array header
(`join_payload` builds one by hand, for tests and tools). `decode_columns`
unpacks a payload and checks its shape into an `EventBatch` (`decode_commit`:
its events): flat payloads in one typed msgspec call, everything else by
msgpack with explicit limits; any failure is a `CorruptionError` carrying the
file and offset the caller names. No I/O here.
"""
from __future__ import annotations

from typing import Any, Union

import msgpack
from msgspec.msgpack import Decoder as _MsgspecDecoder, Encoder as _MsgspecEncoder

from .batch import EventBatch
from .errors import CorruptionError, ValidationError
from .event import Event, check_unicode

MAX_COMMIT_BYTES = 256 << 20
"""The largest encoded commit (its payload), whatever the backend ([F-09])."""

__all__ = ["MAX_COMMIT_BYTES", "encode_commit", "encode_event", "join_payload", "decode_commit", "decode_columns",
           "decode_rows", "pack", "unpack"]

# msgspec writes the same bytes as msgpack for the exact built-in types (SPEC §7.7;
# tests/test_codec.py checks it on generated values) in about two thirds of the time.
# It is only given commits the store's plain check passed (exact dicts, lists, tuples,
# str and scalars all through): a dict subclass it would encode from its entries,
# where msgpack asks the subclass. msgpack, the reference, encodes everything else
# and names what cannot be encoded.
_fast_encode = _MsgspecEncoder().encode
Scalar = Union[str, int, float, bool, None]
"""A value of the flat payloads `decode_columns` decodes in one typed msgspec call."""
# A payload of events whose data and meta hold scalars only: msgspec checks every
# field's type while decoding (in C), and gives what msgpack gives for these types.
_decode_flat = _MsgspecDecoder(list[tuple[str, str, dict[str, Scalar], dict[str, Scalar]]]).decode


def pack(value: Any) -> bytes:
    """msgpack ``value``; raises ValidationError for anything msgpack refuses."""
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError) as exc:
        raise ValidationError(f"value cannot be encoded: {exc}") from exc


def encode_event(type_: str, key: str, data: dict, meta: dict) -> bytes:
    return pack([type_, key, data, meta])


def encode_commit(items: list[tuple[str, str, dict, dict]], max_event_bytes: int, *,
                  plain: bool = False) -> bytes:
    """The payload of a commit of ``(type, key, data, meta)`` items ([F-08], [F-12]).

    ``plain``: every value is of an exact built-in type (`event.plain_columns`),
    so the fast encoder may write it. Raises ValidationError for anything msgpack
    refuses, naming a key or type that is not valid Unicode, and for an event over
    ``max_event_bytes`` or a payload over `MAX_COMMIT_BYTES`.
    """
    payload = None
    if plain:
        try:
            payload = _fast_encode(items)
        except Exception:  # noqa: BLE001 - a lone surrogate, an int over 64 bits: msgpack says
            pass
    if payload is None:
        payload = _reference_encode(items)
    return _check_sizes(items, payload, max_event_bytes)


def _reference_encode(items: list[tuple[str, str, dict, dict]]) -> bytes:
    try:
        return msgpack.packb(items, use_bin_type=True)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError) as exc:
        for type_, key, _, _ in items:  # name the culprit when it is a name
            check_unicode("event type", type_)
            check_unicode("key", key)
        raise ValidationError(f"value cannot be encoded: {exc}") from exc


def _check_sizes(items: list[tuple[str, str, dict, dict]], payload: bytes, max_event_bytes: int) -> bytes:
    if len(payload) > min(max_event_bytes, MAX_COMMIT_BYTES):  # only then can a limit be passed
        for item in items:
            size = len(encode_event(*item))
            if size > max_event_bytes:
                raise ValidationError(f"event for key {item[1]!r} is {size} bytes encoded; "
                                      f"max_event_bytes is {max_event_bytes}")
        if len(payload) > MAX_COMMIT_BYTES:
            raise ValidationError(f"commit is {len(payload)} bytes; the limit is {MAX_COMMIT_BYTES}")
    return payload


def join_payload(encoded: list[bytes]) -> bytes:
    """The payload of a commit: an array header followed by its events."""
    n = len(encoded)
    if n < 16:
        head = bytes((0x90 | n,))
    elif n < 1 << 16:
        head = b"\xdc" + n.to_bytes(2, "big")
    else:
        head = b"\xdd" + n.to_bytes(4, "big")
    return head + b"".join(encoded)


def unpack(data: bytes | bytearray | memoryview, file: str, offset: int, what: str) -> Any:
    """Unpack untrusted bytes with every length limited by their size."""
    n = len(data)
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True,
            max_str_len=n, max_bin_len=n, max_array_len=n, max_map_len=n, max_ext_len=n,
        )
    except Exception as exc:  # msgpack raises many types, incl. StackError
        raise CorruptionError(file, offset, f"{what} does not decode: {type(exc).__name__}: {exc}") from None


def decode_rows(payload: bytes) -> list[list[Any]]:
    """``[type, key, data, meta]`` per event of a payload this process just encoded (trusted)."""
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)


def decode_columns(payload: bytes, first_seq: int, count: int, ts: int,
                   file: str, offset: int) -> EventBatch:
    """Decode a frame's payload into exactly ``count`` events ([F-08], [F-09]).

    Payloads whose data and meta hold only scalars (str, int, float, bool,
    None) are decoded and checked in one typed msgspec call; anything else,
    valid or not, is decoded by msgpack, the reference, which decides (and
    names the damage): both accept exactly the same payloads and give equal
    events (tests/test_decode_fast.py).
    """
    try:
        rows = _decode_flat(payload)
    except Exception:  # noqa: BLE001 - not flat, or damaged: the reference path decides
        rows = None
    if rows and len(rows) == count:
        return EventBatch(first_seq, ts, rows)
    return EventBatch.of(_reference_events(payload, first_seq, count, ts, file, offset))


def decode_commit(payload: bytes, first_seq: int, count: int, ts: int,
                  file: str, offset: int) -> list[Event]:
    """Decode a frame's payload into exactly ``count`` events (see `decode_columns`)."""
    return decode_columns(payload, first_seq, count, ts, file, offset).events


def _reference_events(payload: bytes, first_seq: int, count: int, ts: int,
                      file: str, offset: int) -> list[Event]:
    """`decode_columns` by msgpack, the reference: any payload, checked event by event."""
    items = unpack(payload, file, offset, "commit payload")
    if type(items) is not list or len(items) != count:
        raise CorruptionError(file, offset, f"commit payload does not hold {count} events")
    events = []
    seq = first_seq
    try:
        for type_, key, data, meta in items:
            if type(type_) is not str or type(key) is not str or type(data) is not dict or type(meta) is not dict:
                raise ValueError("bad field types")
            events.append(Event(seq, ts, type_, key, data, meta))
            seq += 1
    except (TypeError, ValueError):
        raise CorruptionError(file, offset, "commit payload holds a malformed event") from None
    return events
