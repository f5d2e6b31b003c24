"""The old JSON file, read: bytes to text, text to entries, entries to values.

This module owns what the legacy uploader's file means. `decode_legacy`
turns its bytes into text without ever inventing a character: UTF-8 (a
BOM is accepted, as are UTF-16/32 with a BOM) or an encoding the caller
names; bytes that do not decode raise `LegacyDecodeError` with the
offset, rather than becoming U+FFFD in a stored key. `parse_legacy_json`
reads ``{media_key: {...}}`` as far as it can: a damaged file loses only
the entries it cannot read. `read_entry` turns one entry into the key,
the title/description to store, the entry's other fields (kept as JSON
text) and its times (``last_modified`` and the like, as ns since the
epoch). It is sans-I/O: no file is opened here and nothing is written.
"""
from __future__ import annotations

import codecs
import datetime as _dt
import json
import math
import re
from typing import Any

import msgspec

from eventstore.errors import ValidationError

from .checks import check_text
from .keys import media_key

__all__ = ["LegacyDecodeError", "Entry", "decode_legacy", "parse_legacy_json", "read_entry", "texts_encode",
           "parse_legacy_time", "UPDATED_FIELDS", "CREATED_FIELDS"]

# Fields of an entry read as the item's times (the first present wins).
UPDATED_FIELDS = ("last_modified", "modified", "updated", "updated_at", "mtime")
CREATED_FIELDS = ("created", "created_at")
_STORED = frozenset(("title", "description"))
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_MAX_SECONDS = 1e11      # a number below this is seconds since the epoch (year 5138) ...
_MAX_MILLIS = 1e14       # ... below this, milliseconds; above, not a time we read
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_WS = re.compile(r"\s*")
# Resynchronise on the next top-level entry: `, "key": {`
_NEXT_ENTRY = re.compile(r',\s*(?="(?:[^"\\]|\\.)*"\s*:\s*\{)')


class LegacyDecodeError(ValidationError):
    """The file is not text in the encoding it was read as; nothing was imported.

    ``encoding`` is the one tried, ``offset`` the byte offset of the first
    byte that does not decode, ``line`` its line (1-based, counting the
    newline bytes before it), ``byte`` the bytes that failed.
    """

    def __init__(self, message: str, *, encoding: str, offset: int, line: int,
                 byte: bytes) -> None:
        super().__init__(message)
        self.encoding = encoding
        self.offset = offset
        self.line = line
        self.byte = byte


class Entry(msgspec.Struct, frozen=True, gc=False):
    """One usable entry of the file.

    Untracked by the garbage collector (it holds only strings, ints and a
    tuple of strings): an import keeps 100k of them, and tracked ones made
    each full collection during the import walk them all (+0.15 s per 100k).
    """

    key: str                    # the normalised media key
    title: str | None           # as the file has it (None: the entry has none)
    description: str | None
    extras: str | None          # JSON text of the entry's other fields, if any
    names: tuple[str, ...]      # the names of those fields
    updated: int | None         # ns since the epoch, from a field in UPDATED_FIELDS
    created: int | None         # ns since the epoch, from a field in CREATED_FIELDS
    note: str | None            # why a time field present was not used


def decode_legacy(raw: bytes, encoding: str | None = None) -> tuple[str, str, bool]:
    """``(text, encoding used, cut)`` of the file's bytes.

    Without ``encoding``: UTF-8, or the encoding a BOM names. Never
    replaces a byte: one that does not decode raises `LegacyDecodeError`,
    except a multi-byte character cut by the end of the file (a truncated
    file), which is dropped and reported as ``cut``. A leading BOM is not
    part of the text.
    """
    if encoding is None:
        encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), "utf-8")
    else:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValidationError(f"unknown encoding {encoding!r}") from None
    cut = False
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            text = decoder.decode(raw, final=False)     # fails unless only the end is cut
        except UnicodeDecodeError:
            bad = raw[exc.start:exc.end]
            line = raw.count(b"\n", 0, exc.start) + 1
            raise LegacyDecodeError(
                f"the file is not {encoding} text: byte {bad.hex(' ')} at offset {exc.start} "
                f"(line {line}) does not decode; nothing was imported. If it is in another "
                "encoding, name it (latin-1 and cp1252 are common for old files)",
                encoding=encoding, offset=exc.start, line=line, byte=bad) from None
        cut = True
    return text.removeprefix("\ufeff"), encoding, cut


def parse_legacy_json(text: str) -> tuple[list[tuple[str, Any]], list[str], bool]:
    """Entries of an old JSON file, read as far as possible.

    Returns ``(entries, errors, damaged)``. A valid file parses with
    ``json``. A damaged one is walked entry by entry: an unreadable entry is
    reported and skipped up to the next ``, "key": {``; a truncated tail
    loses only the entry it cut.
    """
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError):   # RecursionError: hostile nesting
        pass
    else:
        if isinstance(whole, dict):
            return list(whole.items()), [], False
        return [], [f"top level is a {type(whole).__name__}, not an object"], True
    decoder = json.JSONDecoder()
    entries: list[tuple[str, Any]] = []
    errors: list[str] = []
    n = len(text)
    pos = _skip(text, 0)
    if pos >= n or text[pos] != "{":
        return [], ["not a JSON object"], True
    pos += 1
    while True:
        pos = _skip(text, pos)
        if pos >= n:
            errors.append(f"truncated at offset {n} (no closing brace)")
            break
        if text[pos] == "}":
            break
        if text[pos] == ",":
            pos += 1
            continue
        start = pos
        try:
            key, pos = decoder.raw_decode(text, pos)
            if not isinstance(key, str):
                raise ValueError("entry key is not a string")
            pos = _skip(text, pos)
            if pos >= n or text[pos] != ":":
                raise ValueError("expected ':'")
            value, pos = decoder.raw_decode(text, _skip(text, pos + 1))
        except (ValueError, RecursionError) as exc:
            errors.append(f"unreadable entry at offset {start}: {exc}")
            found = _NEXT_ENTRY.search(text, start + 1)
            if found is None:
                break
            pos = found.end()
            continue
        entries.append((key, value))
    return entries, errors, True


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()   # type: ignore[union-attr]  # \s* always matches


def read_entry(name: str, value: Any, *, text_checked: bool = False) -> Entry:
    """The key, values, other fields and times of one entry; ValidationError says why
    it is unusable (the catalog would refuse its key or a value). ``text_checked``:
    the caller knows every ``str`` title and description encodes (checked in bulk)."""
    key = media_key(name)
    if not isinstance(value, dict):
        raise ValidationError(f"entry is a {type(value).__name__}, not an object")
    title, desc = value.get("title"), value.get("description")
    if title is not None and not (text_checked and title.__class__ is str):
        check_text("title", title)
    if desc is not None and not (text_checked and desc.__class__ is str):
        check_text("description", desc)
    if len(value) <= 2 and value.keys() <= _STORED:
        return Entry(key, title, desc, None, (), None, None, None)
    others = {k: v for k, v in value.items() if k not in _STORED}
    updated, note = _first_time(others, UPDATED_FIELDS)
    created, created_note = _first_time(others, CREATED_FIELDS)
    return Entry(key, title, desc, _json_text(others), tuple(others), updated, created,
                 note or created_note)


def texts_encode(pairs: list[tuple[str, Any]]) -> bool:
    """Whether every ``str`` title and description in ``pairs`` is valid Unicode
    (one encode of them all: the common case costs no check per entry)."""
    texts = [text for _, value in pairs if value.__class__ is dict
             for text in (value.get("title"), value.get("description")) if text.__class__ is str]
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_text(fields: dict[str, Any]) -> str:
    """The fields as compact JSON text (msgspec: the same JSON as ``json.dumps``, faster)."""
    try:
        return msgspec.json.encode(fields).decode("utf-8")
    except UnicodeEncodeError:      # a lone surrogate from a \udcxx escape: keep it escaped
        return json.dumps(fields, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
        raise ValidationError(f"its other fields cannot be kept ({exc})") from None


def _first_time(fields: dict[str, Any], names: tuple[str, ...]) -> tuple[int | None, str | None]:
    for name in names:
        if name in fields and fields[name] is not None:
            ns = parse_legacy_time(fields[name])
            if ns is None:
                return None, f"{name} {str(fields[name])[:40]!r} is not a time this import reads"
            return ns, None
    return None, None


def parse_legacy_time(value: object) -> int | None:
    """A legacy time as ns since the epoch, or None if it is not one.

    Numbers (and numeric strings) are seconds since the epoch, or
    milliseconds when 1e11 or more; strings are ISO 8601 (``Z`` or an
    offset; without one, local time, as the uploader wrote it).
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            return _iso_time(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not (math.isfinite(value) and 0 <= value < _MAX_MILLIS):
        return None
    micros = value * 1_000_000 if value < _MAX_SECONDS else value * 1000
    return int(round(micros)) * 1000


def _iso_time(text: str) -> int | None:
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.astimezone()     # naive: local time
    micros = (moment - _EPOCH) // _dt.timedelta(microseconds=1)
    return micros * 1000 if micros >= 0 else None
