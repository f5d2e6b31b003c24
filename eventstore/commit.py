"""Appends, checked and encoded before any backend touches storage (SPEC §5).

`Intake` turns what a caller hands to `append`, `append_many` or a
transaction into a `PreparedCommit`: every item validated, the whole commit
encoded to its msgpack payload (so a bad item refuses the commit before a
byte is written) and the values copied, so the caller can no longer change
what will be stored. A backend then only assigns seqs and a time, checks
``expected_version`` against its key versions, stores the payload and builds
the `Event`s with `PreparedCommit.events`. No I/O, no locks here.
"""
from __future__ import annotations

from itertools import count, repeat
from typing import Iterable, Mapping, Sequence, cast

from .codec import decode_rows, encode_commit
from .errors import ValidationError
from .event import Event, Value, plain_columns, plain_item, validate_key, validate_mapping, validate_type

__all__ = ["Intake", "PreparedCommit", "BatchTransaction", "split_item", "check_expected"]

_EMPTY: dict[str, Value] = {}  # never handed out: events get copies
_copy = dict.copy
_MAX_KNOWN_TYPES = 1024
Row = tuple[str, str, dict[str, Value], dict[str, Value]]


class PreparedCommit:
    """One commit, checked and encoded: its payload and what its events will hold."""

    __slots__ = ("n", "types", "keys", "payload", "expected", "_datas", "_metas", "_rows")

    def __init__(self, types: Sequence[str], keys: Sequence[str], payload: bytes,
                 expected: list[int | None] | None, datas: Sequence[dict[str, Value]] | None = None,
                 metas: Sequence[dict[str, Value]] | None = None,
                 rows: list[list[object]] | None = None) -> None:
        self.n = len(keys)
        self.types = types
        self.keys = keys
        self.payload = payload
        self.expected = expected  # per event: the key's version it expects (None: any)
        self._datas = datas  # copies, owned by the commit
        self._metas = metas  # None: every event's meta is empty
        self._rows = rows  # decoded from the payload: ``[type, key, data, meta]`` per event

    def events(self, seq: int, ts: int) -> list[Event]:
        """The commit's events, numbered from ``seq`` and stamped ``ts``."""
        if self._rows is not None:
            return [Event(s, ts, *r) for s, r in zip(count(seq), self._rows)]  # type: ignore[arg-type]
        assert self._datas is not None
        if self.n == 1:
            meta = _copy(_EMPTY) if self._metas is None else self._metas[0]
            return [Event(seq, ts, self.types[0], self.keys[0], self._datas[0], meta)]
        if self._metas is None:  # Event's default meta: a new empty dict each
            return list(map(Event, count(seq), repeat(ts, self.n), self.types, self.keys, self._datas))
        return list(map(Event, count(seq), repeat(ts, self.n), self.types, self.keys, self._datas,
                        self._metas))


def split_item(item: object) -> tuple[object, object, object, object]:
    """``(type, key, data, meta)`` of an `append_many` item (meta None when absent).

    An item is any iterable of 3 or 4 values (a tuple or list, usually), as the
    column-wise check in `plain_columns` reads it.
    """
    if not isinstance(item, (str, bytes, dict)):
        values: tuple[object, ...]
        try:
            values = tuple(cast(Iterable[object], item))
        except TypeError:
            values = ()
        if len(values) == 3:
            return (*values, None)
        if len(values) == 4:
            return values
    raise ValidationError("append_many items are (type, key, data) or (type, key, data, meta)")


def check_expected(expected_version: object) -> int | None:
    if expected_version is not None and (not isinstance(expected_version, int)
                                         or isinstance(expected_version, bool) or expected_version < 0):
        raise ValidationError("expected_version must be a non-negative int")
    return expected_version


class Intake:
    """Checks and encodes the appends of one store (its ``max_event_bytes``)."""

    def __init__(self, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes
        self._known_types: set[str] = set()  # event types already validated

    def check_item(self, type_: object, key: object, data: object, meta: object) -> Row:
        if type_.__class__ is not str or type_ not in self._known_types:
            type_ = validate_type(type_)
            if len(self._known_types) < _MAX_KNOWN_TYPES:
                self._known_types.add(type_)
        return (cast(str, type_), validate_key(key), validate_mapping("data", data),
                validate_mapping("meta", meta))

    def one(self, type_: object, key: object, data: object, meta: object,
            expected_version: object) -> PreparedCommit:
        """An `append`: one event, one commit."""
        if data is None:
            data = _EMPTY
        if meta is None:
            meta = _EMPTY
        plain = plain_item(type_, key, data, meta, self._known_types)
        # plain: exact str type and key, exact dicts of scalars (what check_item would return)
        row = cast(Row, (type_, key, data, meta)) if plain else self.check_item(type_, key, data, meta)
        expected = None if expected_version is None else [check_expected(expected_version)]
        payload = encode_commit([row], self.max_event_bytes, plain=plain)
        if plain:
            return PreparedCommit((row[0],), (row[1],), payload, expected,
                                  [_copy(row[2])], None if not row[3] else [_copy(row[3])])
        return PreparedCommit((row[0],), (row[1],), payload, expected, rows=decode_rows(payload))

    def many(self, items: Iterable[object]) -> PreparedCommit | None:
        """An `append_many`: one atomic commit of every item (None when there are none)."""
        if items.__class__ is not list:
            items = list(items)
        if not items:
            return None
        columns = plain_columns(items, self._known_types)
        if columns is None and self._learn_types(items):
            columns = plain_columns(items, self._known_types)
        if columns is not None:
            types, keys, datas, metas = columns
            n = len(keys)
            rows = list(zip(types, keys, datas, repeat(_EMPTY, n) if metas is None else metas))
            payload = encode_commit(rows, self.max_event_bytes, plain=True)
            return PreparedCommit(types, keys, payload, None, list(map(_copy, datas)),
                                  None if metas is None else list(map(_copy, metas)))
        # check item by item, raising precisely
        return self.rows([self.check_item(*split_item(item)) for item in items], None)

    def rows(self, rows: list[Row], expected: list[int | None] | None) -> PreparedCommit:
        """A commit of checked rows (a transaction's, or `many`'s slow path)."""
        payload = encode_commit(rows, self.max_event_bytes)
        if expected is not None and all(e is None for e in expected):
            expected = None
        return PreparedCommit([r[0] for r in rows], [r[1] for r in rows], payload, expected,
                              rows=decode_rows(payload))

    def _learn_types(self, items: list[object]) -> bool:
        """Validate a batch's event types not seen before; True if any was learned.

        So the first batch of a new type (an import into a new store, say) can
        take the column-wise path too. Anything odd is left to the item-by-item
        check, which raises precisely.
        """
        try:
            new = {item[0] for item in items} - self._known_types  # type: ignore[index]
        except (TypeError, IndexError, KeyError):
            return False
        learned = False
        for type_ in new:
            if type_.__class__ is not str or len(self._known_types) >= _MAX_KNOWN_TYPES:
                return False
            try:
                validate_type(type_)
            except ValidationError:
                return False
            self._known_types.add(type_)
            learned = True
        return learned


class BatchTransaction:
    """`Store.transaction()`'s object: collects checked appends for one commit."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake
        self._rows: list[Row] = []
        self._expected: list[int | None] = []
        self.events: list[Event] = []
        self.done = False

    def append(self, type: str, key: str, data: Mapping[str, Value] | None = None, *,
               meta: Mapping[str, Value] | None = None, expected_version: int | None = None) -> None:
        if self.done:
            raise ValidationError("this transaction has ended; open a new one")
        self._rows.append(self._intake.check_item(type, key, data, meta))
        self._expected.append(check_expected(expected_version))

    def prepared(self) -> PreparedCommit | None:
        """The commit of everything appended (None when nothing was)."""
        return self._intake.rows(self._rows, self._expected) if self._rows else None

    def __len__(self) -> int:
        return len(self._rows)
