"""The event envelope and the validation of everything a caller hands in.

`Event` is an immutable record: a frozen msgspec Struct, which is cheaper to
build and to drop than a named tuple (it is created and freed once per event on
every append and every replay) and is not tracked by the cyclic GC.
`validate_*` functions raise `ValidationError` for anything SPEC §5 forbids,
before a single byte is encoded or written. This module does no I/O.
"""
from __future__ import annotations

from itertools import chain
from typing import Any, Set, Union

import msgspec

from .errors import ValidationError

__all__ = ["Event", "Value", "MAX_KEY_BYTES", "MAX_TYPE_BYTES", "MAX_DEPTH"]

Columns = tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], "tuple[Any, ...] | None"]
"""``(types, keys, datas, metas)`` of a plainly valid batch (`plain_columns`)."""

Value = Union[None, bool, int, float, str, bytes, list["Value"], tuple["Value", ...], dict[str, "Value"]]
"""What an event's ``data`` and ``meta`` may hold: what msgpack stores (SPEC §5)."""

MAX_KEY_BYTES = 4096
MAX_TYPE_BYTES = 256
MAX_DEPTH = 64
_SCALAR_TYPES = (str, int, float, bool, type(None), bytes)
_SCALARS = frozenset(_SCALAR_TYPES)  # exact classes: the fast path


class Event(msgspec.Struct, frozen=True, gc=False):
    """One committed event. ``seq`` starts at 1 and has no gaps.

    Fields are read by name; an Event compares, pickles and copies by value.
    ``gc=False``: the cyclic GC does not track events (their ``data`` and
    ``meta`` are the store's own copies, so they cannot be part of a cycle
    unless a caller puts one there).
    """

    seq: int
    ts: int  # nanoseconds since the epoch, UTC
    type: str
    key: str
    data: dict[str, Value]
    meta: dict[str, Value] = {}  # msgspec gives each event a new empty dict (built in C)


def _check_name(what: str, value: object, limit: int) -> str:
    if value.__class__ is not str and not isinstance(value, str):
        raise ValidationError(f"{what} must be str, not {type(value).__name__}")
    if not value:
        raise ValidationError(f"{what} must not be empty")
    if "\x00" in value:
        raise ValidationError(f"{what} must not contain NUL")
    if len(value) * 4 > limit:  # could be over the limit: measure (short names cannot be)
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ValidationError(f"{what} is not valid Unicode (lone surrogate?)") from exc
        if size > limit:
            raise ValidationError(f"{what} is {size} UTF-8 bytes; the limit is {limit}")
    return value


def check_unicode(what: str, value: str) -> None:
    """Refuse lone surrogates (done in bulk by the encoder; this names the culprit)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{what} is not valid Unicode (lone surrogate?)") from exc


def validate_key(key: object) -> str:
    return _check_name("key", key, MAX_KEY_BYTES)


def validate_type(type_: object) -> str:
    return _check_name("event type", type_, MAX_TYPE_BYTES)


def _check_value(what: str, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValidationError(f"{what} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            if k.__class__ is not str and not isinstance(k, str):
                raise ValidationError(f"{what} has a non-str map key {k!r}")
            if v.__class__ not in _SCALARS:
                _check_value(what, v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            if v.__class__ not in _SCALARS:
                _check_value(what, v, depth + 1)
    elif not isinstance(value, _SCALAR_TYPES):
        raise ValidationError(f"{what} holds a {type(value).__name__}, which cannot be stored")


def validate_mapping(what: str, value: object) -> dict[str, Any]:
    """Check a ``data`` or ``meta`` argument: a dict of msgpack-able values.

    Scalars are checked here by class only; what the class check lets through
    (ints over 64 bits, lone surrogates) the encoder refuses before anything is
    written, and the store reports it as a `ValidationError`.
    """
    if value is None:
        return {}
    if value.__class__ is not dict and not isinstance(value, dict):
        raise ValidationError(f"{what} must be a dict, not {type(value).__name__}")
    _check_value(what, value, 1)
    return value


_DICT_ONLY = frozenset((dict,))
_STR_ONLY = frozenset((str,))
_ITEM_ONLY = frozenset((tuple, list))
_FAST_KEY_CHARS = MAX_KEY_BYTES // 4  # a key this short cannot exceed the byte limit
_chain = chain.from_iterable
_values = dict.values


def plain_item(type_: Any, key: Any, data: Any, meta: Any, known_types: Set[str]) -> bool:
    """Whether one event is plainly valid (as `plain_columns` defines it); False: check it fully."""
    if (type_.__class__ is not str or type_ not in known_types or key.__class__ is not str or not key
            or len(key) > _FAST_KEY_CHARS or "\x00" in key or data.__class__ is not dict
            or meta.__class__ is not dict):
        return False
    for k, v in data.items():
        if k.__class__ is not str or v.__class__ not in _SCALARS:
            return False
    for k, v in meta.items():
        if k.__class__ is not str or v.__class__ not in _SCALARS:
            return False
    return True


def plain_columns(items: list[Any], known_types: Set[str]) -> Columns | None:
    """``(types, keys, datas, metas)`` of a batch every item of which is plainly valid.

    Plainly valid: all items are tuples or lists of one length (3 or 4), their values are of
    exact built-in types (so msgspec encodes them as msgpack does, see
    `codec.encode_commit`, and the copies the events hold are what a replay
    decodes: a str subclass, even as a map key, takes the full path), the type is one of
    ``known_types`` (names validated before), the key is a str of at most
    1024 characters without NUL, and ``data`` (and ``meta``) are dicts with str
    keys and scalar values. The checks run column by column in C, which is what
    makes bulk appends cheap. ``metas`` is None for 3-item batches. Anything
    else, valid or not, returns None: the caller then checks item by item and
    raises precisely.
    """
    try:
        if not _ITEM_ONLY.issuperset(map(type, items)):  # other iterables: the full path (once)
            return None
        columns = tuple(zip(*items, strict=True))  # ValueError when lengths differ
        if len(columns) == 3:
            types, keys, datas = columns
            metas = None
        elif len(columns) == 4:
            types, keys, datas, metas = columns
        else:
            return None
        # exact str: a subclass could pass for a known type through its __hash__/__eq__
        if (not _STR_ONLY.issuperset(map(type, _chain((types, keys))))
                or not known_types.issuperset(types) or "" in keys
                or "\x00" in "".join(keys) or max(map(len, keys)) > _FAST_KEY_CHARS):
            return None
        for maps in (datas, metas):
            if maps is None:
                continue
            if not _DICT_ONLY.issuperset(map(type, maps)):
                return None
            if not _STR_ONLY.issuperset(map(type, _chain(maps))):  # exact str keys, as a replay gives
                return None
            if not _SCALARS.issuperset(map(type, _chain(map(_values, maps)))):
                return None
    except (TypeError, ValueError):  # an item without len(), a key that is not a str, ...
        return None
    return types, keys, datas, metas
