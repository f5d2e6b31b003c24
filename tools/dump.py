#!/usr/bin/env python3
"""Print every frame of a store's segments (or of given segment files).

Usage:  python tools/dump.py STORE_DIR [--events]
        python tools/dump.py path/to/00000000000000000001.seg [...]

Uses the same `FrameScanner` as recovery and verify, with a "print" policy:
each frame's offset, seqs, size and time; each damaged region with its reason
and what resynchronises after it. Never writes.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from eventstore.fs import DEFAULT_FS  # noqa: E402
from eventstore.codec import decode_commit  # noqa: E402
from eventstore.errors import CorruptionError  # noqa: E402
from eventstore.local.frame import Damage, FrameScanner, is_gap  # noqa: E402
from eventstore.local.layout import SEGMENT_HEADER_SIZE, SEGMENTS_DIR  # noqa: E402
from eventstore.local.segment import SegmentStream, list_segments, parse_name, SegmentRef, scan  # noqa: E402


def refs_for(paths: list[str]) -> list[SegmentRef]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(list_segments(DEFAULT_FS, os.path.join(p, SEGMENTS_DIR)))
            continue
        parsed = parse_name(os.path.basename(p))
        if parsed is None:
            sys.exit(f"{p}: not a segment file name")
        out.append(SegmentRef(parsed[0], p, parsed[1]))
    return out


def dump(ref: SegmentRef, events: bool) -> int:
    print(f"== {ref.path}{' (zstd)' if ref.compressed else ''}")
    try:
        stream = SegmentStream(DEFAULT_FS, ref)
    except CorruptionError as exc:
        print(f"   header: {exc.reason}")
        return 1
    print(f"   header: first seq {ref.first_seq}, prev digest {stream.prev_digest.hex()}, {stream.end} bytes")
    scanner = FrameScanner(SEGMENT_HEADER_SIZE, ref.first_seq, stream.prev_digest, end=stream.end)
    problems = 0
    for item in scan(stream, scanner, SEGMENT_HEADER_SIZE, resync=True):
        if isinstance(item, Damage):
            problems += 1
            print(f"   @{item.offset:<10} DAMAGE {item.kind}: {item.reason}")
            continue
        when = datetime.datetime.fromtimestamp(item.ts / 1e9, datetime.timezone.utc).isoformat()
        kind = "gap" if is_gap(item.payload) else "commit"
        print(f"   @{item.offset:<10} {kind} seq {item.first_seq}-{item.last_seq} "
              f"({item.count} ev, {item.size} B) {when} {item.digest.hex()[:12]}")
        if events and kind == "commit":
            for e in decode_commit(item.payload, item.first_seq, item.count, item.ts, ref.path, item.offset):
                print(f"      {e.seq} {e.type} {e.key} {e.data} {e.meta}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="a store directory or segment files")
    ap.add_argument("--events", action="store_true", help="decode and print each event")
    args = ap.parse_args()
    problems = sum(dump(ref, args.events) for ref in refs_for(args.paths))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
