"""Serializer round trips, the type registry, and error messages."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as dt
import decimal
import doctest
import enum
import fractions
import ipaddress
import math
import operator
import pathlib
import uuid
from typing import Annotated, Any, Literal, NamedTuple, Optional, TypedDict
from zoneinfo import ZoneInfo

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepgraph.checkpoint import (
    DeserializationError,
    SerdeError,
    SerializationError,
    Serializer,
    StoredError,
    TypeRegistry,
    default_registry,
)

# -- types used by the tests --------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = (0, 0, 255)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(NamedTuple):
    x: int
    y: Any = None


Pair = collections.namedtuple("Pair", "left right")


@dataclasses.dataclass
class Item:
    name: str
    tags: tuple[str, ...] = ()
    payload: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    a: int
    b: str


@dataclasses.dataclass
class Counted:
    items: list[int]
    total: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.total = sum(self.items)


class Inner(pydantic.BaseModel):
    when: dt.datetime
    coords: tuple[int, int]


class Outer(pydantic.BaseModel):
    inner: Inner
    anything: Any = None
    note: str = "default"


class Loose(pydantic.BaseModel, extra="allow"):
    a: int


class Money:
    """A class with no default codec: needs encode/decode."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents, self.currency = cents, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.cents, self.currency) == (
            other.cents,
            other.currency,
        )


class QuotaError(Exception):
    pass


class TwoArgError(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


class Unregistered:
    pass


def make_registry() -> TypeRegistry:
    registry = TypeRegistry()
    for cls in (Color, Level, Point, Pair, Item, Key, Counted, Inner, Outer, Loose, QuotaError):
        registry.register(cls)
    registry.register(
        Money,
        name="shop.Money",
        encode=lambda m: [m.cents, m.currency],
        decode=lambda p: Money(*p),
    )
    return registry


@pytest.fixture
def serde() -> Serializer:
    return Serializer(make_registry())


def assert_same(a: Any, b: Any) -> None:
    """Equal, with the same types all the way down (1 == 1.0 == True is not enough)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, float):
        assert repr(a) == repr(b)
    elif isinstance(a, decimal.Decimal):
        assert a.as_tuple() == b.as_tuple()
    elif isinstance(a, dict):
        assert len(a) == len(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            assert_same(ka, kb)
            assert_same(va, vb)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, set | frozenset):
        assert a == b
        for x in a:
            assert_same(x, next(y for y in b if y == x))
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, pydantic.BaseModel):
        assert_same(a.__dict__, b.__dict__)
        assert a.model_fields_set == b.model_fields_set
        assert a.__pydantic_extra__ == b.__pydantic_extra__
    elif isinstance(a, BaseException):
        assert_same(a.args, b.args)
        assert getattr(a, "__notes__", None) == getattr(b, "__notes__", None)
    elif isinstance(a, dt.datetime | dt.time):
        assert a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    else:
        assert a == b


def roundtrip(serde: Serializer, value: Any) -> Any:
    out = serde.loads(serde.dumps(value))
    assert_same(value, out)
    return out


# -- round trips -------------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")

EXAMPLES: dict[str, Any] = {
    "plain": {"s": "x", "i": -3, "f": 1.5, "b": True, "n": None, "l": [1, [2]], "by": b"\x00"},
    "empty": [{}, [], (), "", b"", set(), frozenset()],
    "tuple": (1, "a", (2, (3,)), [4, (5,)]),
    "set": {1, "a", (2, 3), frozenset({4})},
    "frozenset": frozenset({(1, 2), "x"}),
    "int keys": {1: "a", -2: "b", 2**70: "c", None: "e", 1.5: "f"},
    "tuple keys": {(1, "a"): [1], ((2,), frozenset({3})): {"x": (4,)}},
    "big ints": [2**63, 2**64, -(2**63) - 1, 2**1000, -(2**1000)],
    "floats": [0.0, -0.0, math.inf, -math.inf, 1e308, 5e-324],
    "surrogates": {"lone \ud800 surrogate": "\udfff", "ok": "é😀"},
    "datetime": [
        dt.datetime(2024, 1, 2, 3, 4, 5, 6),
        dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),
        dt.datetime(1, 1, 1),
        dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5), "EST")),
    ],
    "date time": [dt.date(2024, 2, 29), dt.time(23, 59, 59, 999999, tzinfo=dt.UTC)],
    "timedelta": [dt.timedelta(days=-3, seconds=5, microseconds=7), dt.timedelta.max],
    "timezone": [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30), "IST"), PARIS],
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": [decimal.Decimal("1.50"), decimal.Decimal("-0"), decimal.Decimal("1E+5")],
    "paths": [
        pathlib.Path("/tmp/x"),
        pathlib.PurePosixPath("a/b"),
        pathlib.PureWindowsPath(r"C:\Users\x"),
    ],
    "stdlib": [
        collections.deque([1, (2,)], maxlen=5),
        collections.OrderedDict([("b", 1), ("a", 2)]),
        collections.Counter("hello"),
        range(1, 10, 3),
        complex(1, -2),
        fractions.Fraction(3, 7),
        ipaddress.ip_address("10.0.0.1"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_interface("192.168.0.1/24"),
    ],
    "enums": {Color.RED: Color.BLUE, Level.HIGH: [Level.LOW]},
    "namedtuples": [Point(1, (2, 3)), Pair(Point(0), {"k": (1,)})],
    "dataclasses": {Key(1, "a"): Item("x", ("a", "b"), {"nested": Item("y")})},
    "pydantic": Outer(inner=Inner(when=dt.datetime(2024, 1, 1), coords=(1, 2)), anything=(1,)),
    "custom codec": {"price": Money(150, "EUR"), "all": [Money(1, "USD")]},
}


@pytest.mark.parametrize("value", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_round_trip(serde: Serializer, value: Any) -> None:
    roundtrip(serde, value)


def test_float_nan(serde: Serializer) -> None:
    assert math.isnan(serde.loads(serde.dumps(math.nan)))


def test_bytearray_and_memoryview_load_as_bytes(serde: Serializer) -> None:
    assert serde.loads(serde.dumps([bytearray(b"ab"), memoryview(b"cd")])) == [b"ab", b"cd"]


def test_header_is_magic_version_flags(serde: Serializer) -> None:
    assert serde.dumps({"a": 1})[:4] == b"SG\x01\x00"


def test_dataclass_init_false_field_and_post_init(serde: Serializer) -> None:
    value = Counted([1, 2])
    value.total = 99  # changed after construction: the stored value wins
    assert roundtrip(serde, value).total == 99


def test_pydantic_keeps_fields_set_and_extras(serde: Serializer) -> None:
    inner = Inner(when=dt.datetime(2024, 1, 1), coords=(1, 2))
    partial = Outer(inner=inner)  # anything and note left unset
    out = roundtrip(serde, partial)
    assert out.model_fields_set == {"inner"}
    assert out.model_dump(exclude_unset=True) == partial.model_dump(exclude_unset=True)
    roundtrip(serde, Loose(a=1, b=(2,), c=Inner(when=inner.when, coords=(3, 4))))


def test_pydantic_model_inside_any_field_stays_a_model(serde: Serializer) -> None:
    inner = Inner(when=dt.datetime(2024, 1, 1), coords=(1, 2))
    out = roundtrip(serde, Outer(inner=inner, anything=inner))
    assert isinstance(out.anything, Inner)


def test_dataclass_loads_after_fields_change() -> None:
    @dataclasses.dataclass
    class V1:
        a: int
        removed: str

    @dataclasses.dataclass
    class V2:
        a: int
        added: str = "new"

    old = TypeRegistry()
    old.register(V1, name="app.Thing")
    new = TypeRegistry()
    new.register(V2, name="app.Thing")
    data = Serializer(old).dumps(V1(1, "x"))
    assert Serializer(new).loads(data) == V2(1, "new")


# -- exceptions ------------------------------------------------------------------------


def test_builtin_exception_round_trips_with_notes(serde: Serializer) -> None:
    exc = KeyError("missing", 3)
    exc.add_note("while running node 'a'")
    out = roundtrip(serde, {"error": exc})["error"]
    assert type(out) is KeyError and out.__notes__ == ["while running node 'a'"]


def test_registered_exception_loads_as_its_class(serde: Serializer) -> None:
    assert type(roundtrip(serde, QuotaError("over", {"limit": 5}))) is QuotaError


def test_unregistered_exception_loads_as_stored_error(serde: Serializer) -> None:
    class LocalError(Exception):
        pass

    out = serde.loads(serde.dumps([LocalError("bad", (1, 2))]))[0]
    assert out == StoredError(
        type_name=f"{__name__}.test_unregistered_exception_loads_as_stored_error.<locals>.LocalError",
        args=("bad", (1, 2)),
        message="('bad', (1, 2))",
    )
    assert str(out).endswith("LocalError: ('bad', (1, 2))")
    # A StoredError dumps as the exception it stands for: registering the class later
    # brings the real class back.
    registry = make_registry()
    registry.register(LocalError)
    again = Serializer(registry).loads(serde.dumps(out))
    assert type(again) is LocalError and again.args == ("bad", (1, 2))


def test_exception_with_unstorable_args_keeps_reprs(serde: Serializer) -> None:
    out = serde.loads(serde.dumps(QuotaError("x", Unregistered())))
    assert isinstance(out, StoredError) and out.type_name.endswith("QuotaError")
    assert out.args[0] == "'x'" and "Unregistered" in out.args[1]


def test_exception_whose_constructor_rejects_its_args(serde: Serializer) -> None:
    registry = make_registry()
    registry.register(TwoArgError)
    serde = Serializer(registry)
    out = serde.loads(serde.dumps(TwoArgError(1, 2)))
    assert out == StoredError(f"{__name__}.TwoArgError", ("1/2",), "1/2")


def test_exception_group(serde: Serializer) -> None:
    group = ExceptionGroup("two failed", [ValueError("a"), QuotaError("b")])
    out = serde.loads(serde.dumps(group))
    assert type(out) is ExceptionGroup and out.message == "two failed"
    assert [type(e) for e in out.exceptions] == [ValueError, QuotaError]


# -- the registry --------------------------------------------------------------------


def test_register_returns_the_class_and_names_it() -> None:
    registry = TypeRegistry()
    assert registry.register(Item) is Item
    assert registry.name_of(Item) == f"{__name__}.Item"
    assert Item in registry and f"{__name__}.Item" in registry
    assert registry.name_of(Unregistered) is None and Unregistered not in registry
    assert tuple in registry and dt.datetime in registry  # native types count


def test_new_registry_knows_the_stdlib() -> None:
    registry = TypeRegistry()
    for name in ("collections.deque", "builtins.ValueError", "zoneinfo.ZoneInfo"):
        assert name in registry


@pytest.mark.parametrize(
    ("cls", "kwargs", "error"),
    [
        (tuple, {}, ValueError),
        (dt.datetime, {}, ValueError),
        (Money, {}, TypeError),
        (Money, {"encode": repr}, TypeError),
        ("Item", {}, TypeError),
        (Item, {"name": ""}, TypeError),
    ],
)
def test_register_rejects(cls: Any, kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        TypeRegistry().register(cls, **kwargs)


def test_a_name_belongs_to_one_class() -> None:
    registry = TypeRegistry()
    registry.register(Item, name="x.Thing")
    with pytest.raises(ValueError, match=r"x\.Thing"):
        registry.register(Key, name="x.Thing")
    with pytest.raises(ValueError, match=r"builtins\.ValueError"):
        registry.register(QuotaError, name="builtins.ValueError")


def test_a_redefined_class_takes_over_its_name() -> None:
    def define() -> type:
        @dataclasses.dataclass
        class Cell:
            v: int

        return Cell

    registry = TypeRegistry()
    first, second = define(), define()
    registry.register(first)
    registry.register(second)
    serde = Serializer(registry)
    assert type(serde.loads(serde.dumps(first(1)))) is second


def test_registering_again_replaces_the_codec() -> None:
    registry = TypeRegistry()
    registry.register(Key)
    registry.register(Key, name="k", encode=lambda k: [k.a, k.b], decode=lambda p: Key(*p))
    assert registry.name_of(Key) == "k" and f"{__name__}.Key" not in registry
    serde = Serializer(registry)
    assert serde.loads(serde.dumps(Key(1, "a"))) == Key(1, "a")


def test_copy_is_independent() -> None:
    registry = TypeRegistry()
    clone = registry.copy()
    clone.register(Item)
    assert Item in clone and Item not in registry


def test_default_registry_is_live_for_existing_serializers() -> None:
    @dataclasses.dataclass
    class LateType:
        v: int

    serde = Serializer()
    assert serde.registry is default_registry()
    with pytest.raises(SerializationError):
        serde.dumps(LateType(1))
    default_registry().register(LateType)
    assert serde.loads(serde.dumps(LateType(1))) == LateType(1)


class Node(TypedDict):
    item: Item


@dataclasses.dataclass
class Tree:
    children: list[Tree]
    level: Literal[Level.LOW, "other"]


class State(TypedDict, total=False):
    items: Annotated[list[Item], operator.add]
    outer: Optional[Outer]  # noqa: UP045 - the old spelling must work too
    points: dict[str, Point | Pair]
    colors: tuple[Color, ...]
    tree: Tree
    nodes: list[Node]
    error: QuotaError | None


def test_register_schema_finds_every_class() -> None:
    registry = TypeRegistry()
    found = registry.register_schema(State)
    assert set(found) == {Item, Outer, Inner, Point, Pair, Color, Tree, Level, QuotaError}
    assert registry.register_schema(State) == []
    serde = Serializer(registry)
    roundtrip(serde, {"tree": Tree([Tree([], Level.LOW)], "other"), "nodes": [{"item": Item("a")}]})


def test_register_schema_keeps_custom_codecs() -> None:
    registry = TypeRegistry()
    registry.register(Item, name="custom", encode=lambda i: i.name, decode=Item)
    registry.register_schema(list[Item])
    assert registry.name_of(Item) == "custom"


def test_register_schema_with_unresolvable_annotations() -> None:
    @dataclasses.dataclass
    class HasForwardRef:
        later: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821
        item: Item

    registry = TypeRegistry()
    assert HasForwardRef in registry.register_schema(HasForwardRef)


# -- errors when dumping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (Unregistered(), "state"),
        ({"items": [1, 2, 3, {"payload": Unregistered()}]}, "state.items[3].payload"),
        ({"a": (1, [Unregistered()])}, "state.a[1][0]"),
        ({"x y": {5: Unregistered()}}, "state['x y'][5]"),
        ([Item("a", payload=Unregistered())], "state[0].payload"),
        (
            {
                "m": Outer(
                    inner=Inner(when=dt.datetime(2024, 1, 1), coords=(1, 2)),
                    anything=[Unregistered()],
                )
            },
            "state.m.anything[0]",
        ),
        ({"s": {(1, Unregistered())}}, "state.s[0][1]"),
        ({Unregistered(): 1}, "state[key <"),
    ],
)
def test_unsupported_value_error_names_path_and_type(
    serde: Serializer, value: Any, path: str
) -> None:
    with pytest.raises(SerializationError) as info:
        serde.dumps(value)
    err = info.value
    assert isinstance(err, SerdeError) and isinstance(err, ValueError)
    assert err.path.startswith(path) and err.type_name == f"{__name__}.Unregistered"
    assert str(err).startswith(err.path)
    assert "register(Unregistered, encode=..., decode=...)" in str(err)


def test_dump_error_path_is_relative_to_the_given_path(serde: Serializer) -> None:
    with pytest.raises(SerializationError) as info:
        serde.dumps([Color.RED, Unregistered()], path="state.messages")
    assert info.value.path == "state.messages[1]"


def test_hint_for_a_dataclass_needs_no_codec(serde: Serializer) -> None:
    @dataclasses.dataclass
    class Plain:
        v: int

    with pytest.raises(SerializationError, match=r"register\(Plain\), or declare"):
        serde.dumps(Plain(1))


def test_encode_function_that_raises(serde: Serializer) -> None:
    registry = make_registry()
    registry.register(Unregistered, encode=lambda u: 1 / 0, decode=lambda p: Unregistered())
    with pytest.raises(SerializationError, match="ZeroDivisionError") as info:
        Serializer(registry).dumps({"u": Unregistered()})
    assert info.value.path == "state.u"


def test_self_reference_is_an_error_not_a_crash(serde: Serializer) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(SerializationError, match="nests too deeply"):
        serde.dumps({"loop": loop})
    deep: Any = ()
    for _ in range(5000):
        deep = (deep,)
    with pytest.raises(SerializationError):
        serde.dumps(deep)


def test_errors_copy_with_their_fields() -> None:
    err = DeserializationError("boom", path="state.x", type_name="a.B", hint="fix it")
    clone = copy.deepcopy(err)
    assert (clone.path, clone.type_name, clone.hint, str(clone)) == (
        "state.x",
        "a.B",
        "fix it",
        "state.x: boom fix it",
    )


# -- typed pairs, and the docstring examples -------------------------------------------


def test_dumps_typed(serde: Serializer) -> None:
    assert serde.dumps_typed(b"raw") == ("bytes", b"raw")
    assert serde.loads_typed(serde.dumps_typed(b"raw")) == b"raw"
    tag, data = serde.dumps_typed((1,))
    assert tag == "stepgraph" and serde.loads_typed((tag, data)) == (1,)
    with pytest.raises(DeserializationError, match="pickle"):
        serde.loads_typed(("pickle", b"\x80"))


def test_docstring_examples() -> None:
    import stepgraph.checkpoint

    result = doctest.testmod(stepgraph.checkpoint, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 3


# -- property: every supported value round-trips with its types -------------------------

_tz = st.none() | st.just(dt.UTC) | st.timezones()
_hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.datetimes(timezones=_tz)
    | st.dates()
    | st.times(timezones=_tz)
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.fractions()
    | st.sampled_from(Color)
    | st.sampled_from(Level)
    | st.builds(Key, st.integers(), st.text(max_size=4))
    | st.text(max_size=8).map(pathlib.PurePosixPath)
)
_hashables = st.recursive(
    _hashable_leaves,
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple)
        | st.frozensets(inner, max_size=3)
        | st.builds(Point, inner, inner)
    ),
    max_leaves=6,
)
values = st.recursive(
    _hashables,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_hashables, inner, max_size=4)
        | st.sets(_hashables, max_size=3)
        | st.builds(Item, st.text(max_size=4), st.lists(st.text(max_size=2)).map(tuple), inner)
        | st.builds(
            lambda a: Outer(inner=Inner(when=dt.datetime(2024, 1, 1), coords=(1, 2)), anything=a),
            inner,
        )
        | st.builds(Pair, inner, inner)
        | st.builds(lambda a: QuotaError("failed", a), inner)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_supported_value_round_trips(value: Any) -> None:
    roundtrip(Serializer(make_registry()), value)
