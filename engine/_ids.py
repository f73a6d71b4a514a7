"""Deterministic ids: task ids hashed from their coordinates, checkpoint ids.

Task ids are an xxh3-128 hash over (checkpoint id, namespace, step, node, and the
triggers or Send index), with a separator byte between parts so that different
part boundaries can never produce the same input. Re-planning from the same
checkpoint therefore yields the same ids, which is how saved writes find their
tasks again on resume.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import xxhash

_SEP = b"\x00"


def task_id(checkpoint_id: str, namespace: str, step: int, node: str, *parts: str) -> str:
    """The id of a task, formatted as a UUID string."""
    data = _SEP.join(
        [checkpoint_id.encode(), namespace.encode(), str(step).encode(), node.encode()]
        + [p.encode() for p in parts]
    )
    return str(uuid.UUID(bytes=xxhash.xxh3_128_digest(data)))


_lock = threading.Lock()
_last_ts = 0


def checkpoint_id(step: int) -> str:
    """A new checkpoint id: a time-ordered UUID (version 6 layout).

    The 60-bit timestamp is forced to increase strictly within the process, so ids
    sort in creation order; the low bits carry the step and random bits so that ids
    from different processes do not collide.
    """
    global _last_ts
    with _lock:
        ts = time.time_ns() // 100 + 0x01B21DD213814000  # 100 ns ticks since 1582
        if ts <= _last_ts:
            ts = _last_ts + 1
        _last_ts = ts
    time_high = (ts >> 12) & 0xFFFFFFFFFFFF
    time_low = ts & 0x0FFF
    clock_seq = step & 0x3FFF
    node = int.from_bytes(os.urandom(6), "big")
    value = (time_high << 80) | (0x6 << 76) | (time_low << 64)
    value |= (0x2 << 62) | (clock_seq << 48) | node
    return str(uuid.UUID(int=value))
