"""`split_body` reads a snapshot body's outer map without copying its bins, and
gives exactly what unpacking the whole body gives (the plain path): the same
values, or the same error, for the writers' layout, its variants (wide headers,
key order, odd names and versions) and anything else (other keys, other types,
trailing bytes, truncation, bad UTF-8, duplicate keys, deep nesting)."""
from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.codec import pack, unpack
from eventstore.errors import CorruptionError
from eventstore.snapshotbody import _Plain, _split, split_body


def plain(body: bytes) -> Any:
    """What the plain path gives: (versions, entries) or the error (type, text)."""
    try:
        doc = unpack(body, "f", 72, "snapshot body")
        return doc["versions"], [(n, v, s) for n, v, s in doc["projections"]]
    except (CorruptionError, KeyError, TypeError, ValueError) as exc:
        return type(exc), str(exc)


def split(body: bytes) -> Any:
    try:
        versions, entries = split_body(body, "f", 72)
    except (CorruptionError, KeyError, TypeError, ValueError) as exc:
        return type(exc), str(exc)
    as_bytes = lambda v: bytes(v) if isinstance(v, memoryview) else v  # noqa: E731
    return as_bytes(versions), [(n, v, as_bytes(s)) for n, v, s in entries]


NAMES = st.one_of(st.text(max_size=40).filter(lambda t: not any(0xD800 <= ord(c) < 0xE000 for c in t)),
                  st.integers(-2**63, 2**64 - 1), st.binary(max_size=3))
BINS = st.one_of(st.binary(max_size=300), st.binary(min_size=65536, max_size=65540), st.text(max_size=3))
VERSIONS = st.one_of(st.integers(-2**63, 2**64 - 1), st.booleans(), st.none(), st.floats(allow_nan=False))
ENTRIES = st.lists(st.one_of(st.tuples(NAMES, VERSIONS, BINS).map(list),
                             st.lists(st.integers(-2**63, 2**64 - 1), max_size=4)), max_size=20)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    doc: dict[Any, Any] = {}
    order = draw(st.permutations(["versions", "projections"]))
    for key in order:
        if draw(st.integers(0, 9)):
            doc[key] = draw(BINS) if key == "versions" else draw(ENTRIES)
    if not draw(st.integers(0, 5)):
        doc[draw(st.one_of(st.text(max_size=5), st.integers(-9, 9)))] = draw(st.integers(-9, 9))
    body = msgpack.packb(doc, use_bin_type=True, strict_types=False)
    mutation = draw(st.integers(0, 6))
    if mutation == 1 and body:                      # truncated
        body = body[:draw(st.integers(0, len(body) - 1))]
    elif mutation == 2:                             # trailing bytes
        body += draw(st.binary(min_size=1, max_size=3))
    elif mutation == 3 and body:                    # one byte changed
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([draw(st.integers(0, 255))]) + body[i + 1:]
    return body


@settings(max_examples=300, deadline=None)
@given(body=bodies())
def test_split_body_gives_what_the_plain_path_gives(body: bytes) -> None:
    assert split(body) == plain(body)


def test_the_writers_layout_takes_the_fast_path_and_other_layouts_do_not() -> None:
    big = bytes(70000)
    body = pack({"versions": b"v" * 300, "projections": [["media", 5, big], ["kv", -3, b""]]})
    versions, entries = _split(memoryview(body))
    assert isinstance(versions, memoryview) and bytes(versions) == b"v" * 300
    assert [(n, v, bytes(s)) for n, v, s in entries] == [("media", 5, big), ("kv", -3, b"")]
    wide = b"\xdf\0\0\0\2" + msgpack.packb("projections") + b"\xdd\0\0\0\0" + \
        msgpack.packb("versions") + b"\xc6\0\0\0\1x"
    assert _split(memoryview(wide))[0].tobytes() == b"x"
    for other in (pack({"versions": b"", "projections": [], "x": 1}),      # a third key
                  pack({"versions": "text", "projections": []}),           # a str, not a bin
                  pack({"versions": b"", "projections": []}) + b"\0",      # trailing byte
                  b"\x82\xa8versions\xc4\0\xa8versions\xc4\0",             # duplicate key
                  b"\x82\xa8versions\xc4\0\xabprojections\x91\x93\xa2\xff\xfe\x01\xc4\0"):  # not UTF-8
        with pytest.raises(_Plain):
            _split(memoryview(other))
        assert split(other) == plain(other)


@pytest.mark.parametrize("depth", [10, 100_000])
def test_deep_nesting_is_the_plain_paths_error(depth: int) -> None:
    body = b"\x91" * depth + b"\xc0"
    out = split(body)
    assert out == plain(body) and out[0] in (CorruptionError, KeyError, TypeError, ValueError)
