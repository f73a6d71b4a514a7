"""Deterministic ids: task ids hashed from their coordinates, checkpoint ids.

Task ids are an xxh3-128 hash over (checkpoint id, namespace, step, node, and the
triggers or Send index), with a separator byte between parts so that different
part boundaries can never produce the same input. Re-planning from the same
checkpoint therefore yields the same ids, which is how saved writes find their
tasks again on resume.
"""

from __future__ import annotations

import os
import random
import threading
import time

import xxhash

_SEP = "\x00"


def task_id(checkpoint_id: str, namespace: str, step: int, node: str, *parts: str) -> str:
    """The id of a task, formatted as a UUID string."""
    data = _SEP.join((checkpoint_id, namespace, str(step), node, *parts)).encode()
    return _as_uuid(xxhash.xxh3_128_hexdigest(data))


def _as_uuid(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
    node = _random.getrandbits(48)
    value = (time_high << 80) | (0x6 << 76) | (time_low << 64)
    value |= (0x2 << 62) | (clock_seq << 48) | node
    return _as_uuid(f"{value:032x}")


def _timestamp(value: int) -> int:
    """The 60-bit timestamp of a version-6 UUID given as an integer."""
    return ((value >> 80) << 12) | ((value >> 64) & 0x0FFF)


def _parse(checkpoint: str) -> int | None:
    text = checkpoint.replace("-", "")
    if len(text) != 32:
        return None
    try:
        value = int(text, 16)
    except ValueError:
        return None
    return value if (value >> 76) & 0xF == 0x6 else None


# Not for secrets: only keeps ids of different processes apart (reseeded in a forked
# child, which would otherwise draw the same bits as its parent).
_random = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.seed)


class CheckpointIds:
    """The checkpoint ids of one run: time-ordered UUIDs, numbered by barrier.

    The clock is read once per run; id number ``seq`` adds ``seq`` 100 ns ticks, so ids
    increase with ``seq`` whatever order they are asked for in, and the random node
    bits keep runs apart.
    """

    __slots__ = ("_base", "_node")

    def __init__(self, after: str | None = None) -> None:
        value = int(checkpoint_id(0).replace("-", ""), 16)
        self._base = _timestamp(value)
        self._node = value & ((1 << 48) - 1)
        if after is not None:
            # A run that continues a thread numbers its checkpoints after the one it
            # starts from, even when this machine's clock is behind the machine that
            # wrote it: ids then sort in history order whatever the clocks say.
            parent = _parse(after)
            if parent is not None and _timestamp(parent) >= self._base:
                self._base = _timestamp(parent) + 1

    def __call__(self, seq: int) -> str:
        global _last_ts
        ts = self._base + seq
        if ts > _last_ts:  # keep later runs' ids above this run's (no lock: best effort)
            _last_ts = ts
        value = ((ts >> 12) << 80) | (0x6 << 76) | ((ts & 0x0FFF) << 64)
        value |= (0x2 << 62) | ((seq & 0x3FFF) << 48) | self._node
        return _as_uuid(f"{value:032x}")
