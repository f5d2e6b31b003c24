#!/usr/bin/env python3
"""Print every frame of a store's segments (or of given segment files).

Usage:  python tools/dump.py STORE_DIR [--events]
        python tools/dump.py path/to/00000000000000000001.seg [...]

Uses the one segment walk (`eventstore.local.walk`) that recovery, verify and
reads use, with a "print" policy: each frame's offset, seqs, size and time;
each damaged region with its reason and what resynchronises after it. Never
writes.
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
from eventstore.local.frame import Damage, Frame, is_gap  # noqa: E402
from eventstore.local.layout import SEGMENTS_DIR  # noqa: E402
from eventstore.local.segment import SegmentRef, list_segments, parse_name  # noqa: E402
from eventstore.local.walk import Resync, SegmentWalk  # noqa: E402


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
    """Print one segment's frames and damage (the walk over this one file, resynchronising)."""
    print(f"== {ref.path}{' (zstd)' if ref.compressed else ''}")
    walk = SegmentWalk.over(DEFAULT_FS, [ref], resync=Resync.ALWAYS, locked=True)
    problems = 0
    try:
        for visit in walk.visits():
            stream = visit.stream
            print(f"   header: first seq {ref.first_seq}, prev digest {stream.prev_digest.hex()}, "
                  f"{stream.end} bytes")
            for item in visit.frames(verify_chain=True):
                if isinstance(item, Damage):
                    problems += 1
                    print(f"   @{item.offset:<10} DAMAGE {item.kind}: {item.reason}")
                    continue
                print_frame(ref, item, events)
    except CorruptionError as exc:  # a header, or a compressed stream, that does not read
        where = "header" if exc.offset in (0, None) else f"@{exc.offset}"
        print(f"   {where}: {exc.reason}")
        problems += 1
    return problems


def print_frame(ref: SegmentRef, frame: Frame, events: bool) -> None:
    when = datetime.datetime.fromtimestamp(frame.ts / 1e9, datetime.timezone.utc).isoformat()
    kind = "gap" if is_gap(frame.payload) else "commit"
    print(f"   @{frame.offset:<10} {kind} seq {frame.first_seq}-{frame.last_seq} "
          f"({frame.count} ev, {frame.size} B) {when} {frame.digest.hex()[:12]}")
    if events and kind == "commit":
        for e in decode_commit(frame.payload, frame.first_seq, frame.count, frame.ts, ref.path, frame.offset):
            print(f"      {e.seq} {e.type} {e.key} {e.data} {e.meta}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="a store directory or segment files")
    ap.add_argument("--events", action="store_true", help="decode and print each event")
    args = ap.parse_args()
    problems = sum(dump(ref, args.events) for ref in refs_for(args.paths))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
