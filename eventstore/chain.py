"""The digest chain that links every commit to the one before ([F-17]), for every backend.

``digest = BLAKE2b-128(previous digest ‖ prefix ‖ payload)``, where the prefix
is the commit's payload length, event count, first seq and time packed as in
a frame header (bytes 8..32, docs/FORMAT.md §4.2). The segment log stores it
in each frame header; the PostgreSQL backend stores it in a column. Either way
`verify` recomputes it, so a commit removed, reordered or edited with its
checksum recomputed is detected. No I/O here.
"""
from __future__ import annotations

import struct

try:    # the builtin module hashlib takes blake2b from: hashlib itself also loads OpenSSL (2 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

__all__ = ["DIGEST_SIZE", "ZERO_DIGEST", "COMMIT_PREFIX", "chain_digest", "commit_digest", "blake2b"]

DIGEST_SIZE = 16
ZERO_DIGEST = bytes(DIGEST_SIZE)  # the digest "before" the first commit
COMMIT_PREFIX = struct.Struct("<IIQQ")  # payload length, count, first seq, ts


def chain_digest(prev: bytes, prefix: bytes | bytearray | memoryview,
                 payload: bytes | memoryview) -> bytes:
    """The digest after a commit whose packed prefix and payload are given."""
    h = blake2b(prev, digest_size=DIGEST_SIZE)
    h.update(prefix)
    h.update(payload)
    return h.digest()


def commit_digest(prev: bytes, first_seq: int, count: int, ts: int, payload: bytes) -> bytes:
    """The digest after the commit of ``count`` events from ``first_seq`` with this payload."""
    return chain_digest(prev, COMMIT_PREFIX.pack(len(payload), count, first_seq, ts), payload)
