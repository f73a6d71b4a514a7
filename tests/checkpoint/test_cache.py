"""The cache backends: one contract for InMemoryCache and SqliteCache."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stepgraph.checkpoint import (
    AesGcmCipher,
    BaseCache,
    DeserializationError,
    InMemoryCache,
    SchemaVersionError,
    SerializationError,
    Serializer,
    SqliteCache,
)

Make = Callable[..., BaseCache]
NS = ("fn", "node")
OTHER = ("fn", "other")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    made: list[BaseCache] = []

    def build(**kw: Any) -> BaseCache:
        if request.param == "memory":
            cache: BaseCache = InMemoryCache(**kw)
        else:
            cache = SqliteCache(tmp_path / "cache.db", **kw)
        made.append(cache)
        return cache

    yield build
    for cache in made:
        if isinstance(cache, SqliteCache):
            cache.close()


def test_set_then_get(make: Make) -> None:
    cache = make()
    value = [("items", ["a", ("t", 1)]), ("branch:to:b", None)]
    cache.set({(NS, "k1"): (value, None), (OTHER, "k1"): ({"x": {1, 2}}, 60)})
    assert cache.get([(NS, "k1"), (OTHER, "k1"), (NS, "missing")]) == {
        (NS, "k1"): value,
        (OTHER, "k1"): {"x": {1, 2}},
    }
    assert cache.get([]) == {}


def test_values_read_back_are_copies(make: Make) -> None:
    cache = make()
    stored = {"items": [1, 2]}
    cache.set({(NS, "k"): (stored, None)})
    stored["items"].append(3)
    got = cache.get([(NS, "k")])[(NS, "k")]
    got["items"].append(4)
    assert cache.get([(NS, "k")])[(NS, "k")] == {"items": [1, 2]}


def test_set_replaces(make: Make) -> None:
    cache = make()
    cache.set({(NS, "k"): ("old", None)})
    cache.set({(NS, "k"): ("new", None)})
    assert cache.get([(NS, "k")]) == {(NS, "k"): "new"}


def test_entries_expire_with_the_clock(make: Make) -> None:
    clock = Clock()
    cache = make(clock=clock)
    cache.set({(NS, "short"): (1, 5), (NS, "long"): (2, 50), (NS, "never"): (3, None)})
    clock.now += 4.99
    assert len(cache.get([(NS, "short"), (NS, "long"), (NS, "never")])) == 3
    clock.now += 0.02
    assert cache.get([(NS, "short"), (NS, "long"), (NS, "never")]) == {
        (NS, "long"): 2,
        (NS, "never"): 3,
    }
    clock.now += 10_000
    cache.set({(OTHER, "fresh"): (4, 1)})  # also sweeps expired rows (sqlite)
    assert cache.get([(NS, "long"), (NS, "never"), (OTHER, "fresh")]) == {
        (NS, "never"): 3,
        (OTHER, "fresh"): 4,
    }


@pytest.mark.parametrize("ttl", [0, -1, "10", float("nan")])
def test_a_bad_ttl_is_refused(make: Make, ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        make().set({(NS, "k"): (1, ttl)})


def test_clear_by_namespace_or_everything(make: Make) -> None:
    cache = make()
    keys = [(NS, "a"), (OTHER, "a"), (("x",), "b")]
    cache.set({k: (i, None) for i, k in enumerate(keys)})
    cache.clear([NS])
    assert sorted(cache.get(keys).values()) == [1, 2]
    cache.clear([OTHER, ("never", "used")])
    assert list(cache.get(keys).values()) == [2]
    cache.clear()
    assert cache.get(keys) == {}


def test_async_twins(make: Make) -> None:
    cache = make()

    async def main() -> dict[Any, Any]:
        await cache.aset({(NS, "k"): ("v", None), (OTHER, "k"): ("w", None)})
        await cache.aclear([OTHER])
        return await cache.aget([(NS, "k"), (OTHER, "k")])

    assert asyncio.run(main()) == {(NS, "k"): "v"}


def test_an_unregistered_type_is_refused_and_nothing_is_stored(make: Make) -> None:
    class Opaque:
        pass

    cache = make()
    with pytest.raises(SerializationError, match="Opaque"):
        cache.set({(NS, "ok"): (1, None), (NS, "bad"): (Opaque(), None)})
    assert cache.get([(NS, "ok"), (NS, "bad")]) == {}


def test_an_encrypting_serializer_still_gives_stable_keys() -> None:
    serde = Serializer(cipher=AesGcmCipher(b"k" * 32))
    cache = InMemoryCache(serde=serde)
    assert cache.key_serde.cipher is None
    assert cache.key_serde.dumps({"a": 1}) == cache.key_serde.dumps({"a": 1})
    cache.set({(NS, "k"): ("secret", None)})
    assert cache.get([(NS, "k")]) == {(NS, "k"): "secret"}


# -- SQLite specifics -------------------------------------------------------------------


def test_sqlite_entries_survive_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.db"
    with SqliteCache(path) as cache:
        cache.set({(NS, "k"): ({"v": (1, 2)}, None)})
    with SqliteCache(path) as cache:
        assert cache.get([(NS, "k")]) == {(NS, "k"): {"v": (1, 2)}}
        assert repr(cache) == f"SqliteCache({str(path)!r})"


def test_sqlite_damaged_value_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with SqliteCache(path) as cache:
        cache.set({(NS, "k"): ("fine", None)})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE stepgraph_cache SET value = ?", (b"SG\x01\x00\xc1garbage",))
    with SqliteCache(path) as cache, pytest.raises(DeserializationError) as info:
        cache.get([(NS, "k")])
    assert info.value.path.startswith("cache[fn/node]")


def test_sqlite_value_is_never_unpickled(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "cache.db"
    with SqliteCache(path) as cache:
        cache.set({(NS, "k"): ("fine", None)})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE stepgraph_cache SET value = ?", (pickle.dumps(print),))
    with SqliteCache(path) as cache, pytest.raises(DeserializationError, match="magic"):
        cache.get([(NS, "k")])


def test_memory_damaged_value_fails_closed() -> None:
    cache = InMemoryCache()
    cache.set({(NS, "k"): ("fine", None)})
    cache._entries[NS]["k"] = (None, b"SG\x01\x00\xc1")
    with pytest.raises(DeserializationError):
        cache.get([(NS, "k")])


def test_sqlite_cache_shares_a_file_with_the_saver(tmp_path: Path) -> None:
    from stepgraph.checkpoint import SqliteSaver

    path = tmp_path / "both.db"
    with SqliteSaver(path) as saver, SqliteCache(path) as cache:
        cache.set({(NS, "k"): (1, None)})
        assert list(saver.list(None)) == []
        assert cache.get([(NS, "k")]) == {(NS, "k"): 1}


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    SqliteCache(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE stepgraph_cache_schema SET version = 99")
    with pytest.raises(SchemaVersionError):
        SqliteCache(path)


def test_sqlite_closed_cache_says_so(tmp_path: Path) -> None:
    cache = SqliteCache(tmp_path / "c.db")
    cache.close()
    cache.close()
    with pytest.raises(RuntimeError, match="is closed"):
        cache.get([(NS, "k")])


def test_sqlite_namespaces_are_unambiguous(tmp_path: Path) -> None:
    with SqliteCache(tmp_path / "c.db") as cache:
        cache.set({(("a,b", "c"), "k"): (1, None), (("a", "b,c"), "k"): (2, None)})
        assert cache.get([(("a,b", "c"), "k")]) == {(("a,b", "c"), "k"): 1}
        cache.clear([("a", "b,c")])
        assert cache.get([(("a,b", "c"), "k"), (("a", "b,c"), "k")]) == {(("a,b", "c"), "k"): 1}
