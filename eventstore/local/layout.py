"""Every on-disk layout constant, in one place (docs/FORMAT.md).

One `struct.Struct` per on-disk structure, with its magic and sizes. No other
module spells a magic, an offset or a size.
"""
from __future__ import annotations

import struct

from ..chain import DIGEST_SIZE, ZERO_DIGEST
from ..codec import MAX_COMMIT_BYTES

FORMAT_VERSION = 1

# §3 store marker
MARKER_NAME = "METALOG"
MARKER_MAGIC = b"METALOG\n"
MARKER = struct.Struct("<8sHH")  # + CRC-32
MARKER_SIZE = MARKER.size + 4

LOCK_NAME = "LOCK"
MAINTENANCE_LOCK_NAME = "LOCK.maintenance"
WRITERS_LOCK_NAME = "LOCK.writers"
SYNC_LOCK_NAME = "LOCK.sync"
# §8 LOCK.sync content: three slots, "written up to" at 0, "durable up to" at SYNC_SLOT.size and
# "the log ends at" at 2 * SYNC_SLOT.size,
# each a position (segment first seq, offset) and the CRC-32 of those 16 bytes
SYNC_SLOT = struct.Struct("<QQI")
SEGMENTS_DIR = "segments"
SNAPSHOTS_DIR = "snapshots"
QUARANTINE_DIR = "quarantine"
TMP_SUFFIX = ".tmp"
SEGMENT_SUFFIX = ".seg"
ZSEGMENT_SUFFIX = ".zseg"
SNAPSHOT_SUFFIX = ".snap"
NAME_DIGITS = 20

# §4.1 segment header: magic, version, reserved, first_seq, prev digest, reserved, crc
SEGMENT_MAGIC = b"MLSG"
SEGMENT_HEADER = struct.Struct("<4sHHQ16sII")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size  # 40

# §4.2 frame header: magic, crc, length, count, first_seq, ts, digest
FRAME_MAGIC = b"MLFR"
FRAME_HEADER = struct.Struct("<4sIIIQQ16s")
FRAME_HEADER_SIZE = FRAME_HEADER.size  # 48
FRAME_CRC_START = 8  # the CRC covers header[8:48] + payload
FRAME_DIGEST_FIELDS = slice(8, 32)  # what the chain hashes besides the payload
MAX_FRAME_PAYLOAD = MAX_COMMIT_BYTES  # a frame holds one commit

# §6 compressed segment header
ZSEGMENT_MAGIC = b"MLSZ"
ZSEGMENT_HEADER = struct.Struct("<4sHHQQQ16sII")
ZSEGMENT_HEADER_SIZE = ZSEGMENT_HEADER.size  # 56

# §7 snapshot header
SNAPSHOT_MAGIC = b"MLSN"
SNAPSHOT_HEADER = struct.Struct("<4sHHQQQQ16sQII")
SNAPSHOT_HEADER_SIZE = SNAPSHOT_HEADER.size  # 72
SNAPSHOT_VERSION = 2  # 2: key versions as a table ([F-34]); 1: as a msgpack map
SNAPSHOT_VERSIONS_READ = (1, 2)
MAX_SNAPSHOT_BYTES = 1 << 30
KEEP_SNAPSHOTS = 3

# §9 end-of-log record: magic, version, reserved, seq, segment, digest, reserved, crc
END_NAME = "END"
END_MAGIC = b"MLEN"
END_RECORD = struct.Struct("<4sHHQQ16sII")
END_RECORD_SIZE = END_RECORD.size  # 48

assert SEGMENT_HEADER_SIZE == 40 and FRAME_HEADER_SIZE == 48
assert ZSEGMENT_HEADER_SIZE == 56 and SNAPSHOT_HEADER_SIZE == 72 and END_RECORD_SIZE == 48
MAX_SEGMENT_BYTES = 4 << 30  # a plain segment never grows past this ([F-19])
READ_CHUNK = 1 << 20
