"""Channel values as content-addressed blobs, with deltas for append-only channels.

Every saver stores a checkpoint's values the same way:

* each value is serialized and stored once under the xxh3-128 hash of its bytes, so a
  value that did not change (or that two threads share) costs nothing more;
* a checkpoint keeps, per channel, a small reference: the blob's hash plus two sizes;
* a channel that only ever appends (a list grown by ``operator.add``, an accumulating
  ``Topic``) stores just the new items, as a *delta* blob pointing at the previous
  blob, and a full *snapshot* again once the deltas since the last snapshot outweigh
  it twice over. The snapshots' sizes then grow geometrically, so a run that appends
  n items stores O(n) bytes in total, not O(n^2).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import xxhash

FULL = b"F"
DELTA = b"D"
SNAPSHOT_FACTOR = 2  # a snapshot once the deltas since the last one weigh this many times it


class Serde(Protocol):
    def dumps(self, value: Any, *, path: str = "state") -> bytes: ...
    def loads(self, data: bytes, *, path: str = "state") -> Any: ...


Ref = list[Any]
"""``[hash_hex, snapshot_size, delta_bytes_since_snapshot]`` for one channel value."""


def blob_hash(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def encode_value(
    serde: Serde,
    channel: str,
    value: Any,
    previous: Ref | None,
    appended_from: int | None,
) -> tuple[Ref, dict[str, bytes]]:
    """Serialize one channel value; returns its reference and the blobs to store.

    ``appended_from`` says that ``value[:appended_from]`` is exactly the previous
    value of this channel (the one ``previous`` refers to), so only the rest needs
    storing.
    """
    if previous is not None and appended_from is not None and appended_from > 0:
        _, snap_size, since = previous
        if since < SNAPSHOT_FACTOR * snap_size:
            items = serde.dumps(list(value[appended_from:]), path=f"state.{channel}")
            data = DELTA + bytes.fromhex(previous[0]) + items
            key = blob_hash(data)
            return [key, snap_size, since + len(data)], {key: data}
    data = FULL + serde.dumps(value, path=f"state.{channel}")
    key = blob_hash(data)
    return [key, len(data), 0], {key: data}


def decode_values(
    serde: Serde,
    refs: Mapping[str, Ref],
    fetch: Callable[[list[str]], Mapping[str, bytes]],
) -> dict[str, Any]:
    """Rebuild channel values from their references; ``fetch`` loads blobs by hash."""
    out: dict[str, Any] = {}
    chains: dict[str, list[bytes]] = {}
    wanted = {ch: ref[0] for ch, ref in refs.items()}
    while wanted:
        found = fetch(sorted(set(wanted.values())))
        next_round: dict[str, str] = {}
        for ch, key in wanted.items():
            data = found.get(key)
            if data is None:
                from .errors import DeserializationError

                raise DeserializationError(
                    f"blob {key} is missing from the store (deleted or never written)",
                    path=f"state.{ch}",
                )
            chain = chains.setdefault(ch, [])
            chain.append(data)
            if data[:1] == DELTA:
                next_round[ch] = data[1:17].hex()
        wanted = next_round
    for ch, chain in chains.items():
        path = f"state.{ch}"
        base = chain[-1]
        value = serde.loads(base[1:], path=path)
        for delta in reversed(chain[:-1]):
            value = value + serde.loads(delta[17:], path=path)
        out[ch] = value
    return out


def appended_prefix(old: Any, new: Any) -> int | None:
    """``len(old)`` if ``new`` is ``old`` with items appended (same objects), else None."""
    if type(old) is not list or type(new) is not list:
        return None
    n = len(old)
    if len(new) < n or n == 0:
        return None
    # Item identity, compared in C: an appending reducer keeps the old items' objects.
    return n if all(map(operator.is_, old, new)) else None
