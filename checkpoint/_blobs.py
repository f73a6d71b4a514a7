"""Channel values and large writes as content-addressed blobs, with append deltas.

Every saver stores a checkpoint's values the same way:

* each value is serialized and stored once under the xxh3-128 hash of its bytes, so a
  value that did not change (or that two threads share) costs nothing more;
* a checkpoint keeps, per channel, a small reference: the blob's hash plus two sizes;
* a channel that only ever appends (a list grown by ``operator.add``, an accumulating
  ``Topic``) stores just the new items: a *delta* blob names the previous blob and an
  *items* blob, and a full *snapshot* is stored again once the deltas since the last
  one outweigh it twice over. The snapshots' sizes then grow geometrically, so a run
  that appends n items stores O(n) bytes in total, not O(n^2);
* a task's write of at least `WRITE_BLOB_MIN` bytes is a blob too, in the same format
  as an items blob: the write that appended items and the delta that records them
  share one blob.

Blob formats (first byte)::

    F  <serialized value>                      a full value, or the items of a delta
    D  <previous: 16 bytes> <items: 16 bytes>  previous value + the items' list
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import xxhash

FULL = b"F"
DELTA = b"D"
SNAPSHOT_FACTOR = 2  # a snapshot once the deltas since the last one weigh this many times it
WRITE_BLOB_MIN = 256  # writes this large (serialized) are stored as blobs
WRITE_REF = b"@"  # a stored write that is a blob reference: b"@" + 16-byte hash


class Serde(Protocol):
    def dumps(self, value: Any, *, path: str = "state") -> bytes: ...
    def loads(self, data: bytes, *, path: str = "state") -> Any: ...


Ref = list[Any]
"""``[hash_hex, snapshot_size, delta_bytes_since_snapshot]`` for one channel value."""


def blob_hash(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def links(data: bytes) -> tuple[str, ...]:
    """The blobs a blob needs: a delta's previous value and items; nothing otherwise."""
    if data[:1] == DELTA:
        return data[1:17].hex(), data[17:33].hex()
    return ()


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
            items = FULL + serde.dumps(list(value[appended_from:]), path=f"state.{channel}")
            items_key = blob_hash(items)
            data = DELTA + bytes.fromhex(previous[0]) + bytes.fromhex(items_key)
            key = blob_hash(data)
            return [key, snap_size, since + len(items)], {key: data, items_key: items}
    data = FULL + serde.dumps(value, path=f"state.{channel}")
    key = blob_hash(data)
    return [key, len(data), 0], {key: data}


def encode_write(serde: Serde, channel: str, value: Any) -> tuple[bytes, dict[str, bytes]]:
    """A write as stored: its bytes, or a reference to a blob for a large one."""
    data = serde.dumps(value, path=f"writes.{channel}")
    if len(data) < WRITE_BLOB_MIN:
        return data, {}
    blob = FULL + data
    key = blob_hash(blob)
    return WRITE_REF + bytes.fromhex(key), {key: blob}


def write_blob(stored: bytes) -> str | None:
    """The blob a stored write refers to, or None if it holds its value itself."""
    if stored[:1] == WRITE_REF and len(stored) == 17:
        return stored[1:].hex()
    return None


def decode_write(serde: Serde, channel: str, stored: bytes, blobs: Mapping[str, bytes]) -> Any:
    """Load a stored write; ``blobs`` holds the blobs that writes refer to."""
    key = write_blob(stored)
    path = f"writes.{channel}"
    if key is None:
        return serde.loads(stored, path=path)
    blob = blobs.get(key)
    if blob is None:
        from .errors import DeserializationError

        raise DeserializationError(
            f"blob {key} is missing from the store (deleted or never written)", path=path
        )
    return serde.loads(blob[1:], path=path)


def decode_values(
    serde: Serde,
    refs: Mapping[str, Ref],
    fetch: Callable[[list[str]], Mapping[str, bytes]],
) -> dict[str, Any]:
    """Rebuild channel values from their references; ``fetch`` loads blobs by hash."""
    found: dict[str, bytes] = {}
    wanted = {ref[0] for ref in refs.values()}
    while wanted:
        got = fetch(sorted(wanted))
        found.update(got)
        missing = [k for k in wanted if k not in found]
        if missing:
            from .errors import DeserializationError

            owner = next((ch for ch, ref in refs.items() if ref[0] in missing), None)
            raise DeserializationError(
                f"blob {missing[0]} is missing from the store (deleted or never written)",
                path=f"state.{owner}" if owner else "state",
            )
        wanted = {k for key in got for k in links(got[key]) if k not in found}
    out: dict[str, Any] = {}
    for ch, ref in refs.items():
        out[ch] = _rebuild(serde, ch, ref[0], found)
    return out


def _rebuild(serde: Serde, channel: str, key: str, found: Mapping[str, bytes]) -> Any:
    path = f"state.{channel}"
    chain: list[str] = []  # the items blobs, newest first
    data = found[key]
    while data[:1] == DELTA:
        previous, items = links(data)
        chain.append(items)
        data = found[previous]
    value = serde.loads(data[1:], path=path)
    for items in reversed(chain):
        value = value + serde.loads(found[items][1:], path=path)
    return value


def appended_prefix(old: Any, new: Any) -> int | None:
    """``len(old)`` if ``new`` is ``old`` with items appended (same objects), else None."""
    if type(old) is not list or type(new) is not list:
        return None
    n = len(old)
    if len(new) < n or n == 0:
        return None
    # Item identity, compared in C: an appending reducer keeps the old items' objects.
    return n if all(map(operator.is_, old, new)) else None
