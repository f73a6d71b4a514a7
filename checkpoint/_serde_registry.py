"""The registry of types that checkpoints may contain, by stable name.

Stored data names each non-builtin type by a string. Loading looks that string up in
a `TypeRegistry` and nowhere else: a name that is not registered fails closed, and no
module is ever imported because stored data asked for it. The registry therefore
decides, in code, which classes a checkpoint can bring back to life.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import ipaddress
import pathlib
import typing
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin
from zoneinfo import ZoneInfo

from pydantic import BaseModel

T = TypeVar("T")

NATIVE_TYPES: frozenset[type] = frozenset(
    {
        *(type(None), bool, int, float, str, bytes, bytearray, memoryview, list, dict),
        *(tuple, set, frozenset, dt.datetime, dt.date, dt.time, dt.timedelta, dt.timezone),
        *(uuid.UUID, decimal.Decimal, pathlib.PurePosixPath, pathlib.PureWindowsPath),
        *(pathlib.PosixPath, pathlib.WindowsPath),
    }
)
"""Types built into the byte format: always available, never registered."""


@dataclass(frozen=True, slots=True)
class StoredError:
    """An exception loaded from storage whose class is not registered.

    Exceptions are stored as data (type name, args, message, notes), never as code.
    Loading brings back the real class when the registry knows its name, and this
    value object otherwise, so reading an old checkpoint never fails or imports
    anything because of an error it recorded. Dumping a `StoredError` stores the
    original exception's structure again.

    Attributes:
        type_name: the exception class's stored name, e.g. ``"myapp.errors.QuotaError"``.
        args: the exception's ``args``.
        message: ``str(exception)`` at the time it was stored.
        notes: its PEP 678 ``__notes__``.
    """

    type_name: str
    args: tuple[Any, ...] = ()
    message: str = ""
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


@dataclass(frozen=True, slots=True)
class Entry:
    """How one registered class is stored: its name and its two conversion functions."""

    cls: type
    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def qualified_name(cls: type) -> str:
    """The default stored name of a class: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class TypeRegistry:
    """The classes that serialized data may name, each under a stable name.

    A new registry already knows the standard-library types that are not built into
    the byte format (``deque``, ``OrderedDict``, ``Counter``, ``range``, ``complex``,
    ``Fraction``, ``ZoneInfo``, the ``ipaddress`` types and every builtin exception).
    Add your own with `register`, or let `register_schema` find them in a type
    annotation. Registering is cheap and idempotent; call it at import or compile time.

    The stored name defaults to ``f"{cls.__module__}.{cls.__qualname__}"``. It is
    written into every blob, so pass ``name=`` to pin it if the class may move.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Point:
        ...     x: int
        ...     y: int
        >>> registry = TypeRegistry()
        >>> registry.register(Point, name="geo.Point")  # doctest: +ELLIPSIS
        <class '...Point'>
        >>> Serializer(registry).loads(Serializer(registry).dumps([Point(1, 2)]))
        [Point(x=1, y=2)]
    """

    def __init__(self) -> None:
        self._by_type: dict[type, Entry] = {}
        self._by_name: dict[str, Entry] = {}
        self._errors: dict[str, type[BaseException]] = {}
        self._error_names: dict[type, str] = {}
        _register_stdlib(self)

    def register(
        self,
        cls: type[T],
        *,
        name: str | None = None,
        encode: Callable[[T], Any] | None = None,
        decode: Callable[[Any], T] | None = None,
    ) -> type[T]:
        """Allow instances of ``cls`` in serialized data.

        Without ``encode``/``decode``, dataclasses, namedtuples, pydantic models and
        enums get a default codec, and exception classes are stored structurally
        (loaded back as ``cls`` instead of a `StoredError`). Any other class needs
        both functions: ``encode(obj)`` returns a serializable value (it may contain
        other supported or registered objects) and ``decode(value)`` rebuilds the
        object from it.

        Registering a class again replaces its entry. A redefinition of a class
        (same module and qualified name, as after re-running a notebook cell) takes
        over the name; a different class may not.

        Args:
            cls: the class. Only instances of exactly this class match; register
                subclasses separately.
            name: the stored name; defaults to ``module.QualName``.
            encode: object -> serializable value.
            decode: serializable value -> object.

        Returns:
            ``cls``, unchanged.

        Raises:
            TypeError: ``cls`` is not a class, only one of ``encode``/``decode`` was
                given, or there is no default codec for ``cls``.
            ValueError: ``cls`` is built into the format, or ``name`` is taken by
                another class.
        """
        if not isinstance(cls, type):
            raise TypeError(f"register() needs a class, got {cls!r}")
        if cls in NATIVE_TYPES:
            raise ValueError(
                f"{cls.__qualname__} is built into the byte format; no need to register"
            )
        if (encode is None) != (decode is None):
            raise TypeError("pass both encode= and decode=, or neither")
        name = qualified_name(cls) if name is None else name
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        self._check_name(cls, name)
        self._forget(cls)
        if encode is None and issubclass(cls, BaseException):
            self._errors[name] = cls
            self._error_names[cls] = name
            return cls
        if encode is None or decode is None:
            encode, decode = _default_codec(cls)
        entry = Entry(cls, name, encode, decode)
        self._by_type[cls] = self._by_name[name] = entry
        return cls

    def register_schema(self, schema: Any) -> list[type]:
        """Register every class a type annotation can contain, recursively.

        Walks TypedDict, dataclass, namedtuple and pydantic fields, ``Annotated``,
        generic arguments (``list[...]``, ``dict[...]``, ``tuple[...]``, ``Optional``,
        unions), enum members in ``Literal`` and type aliases. Registers each
        dataclass, namedtuple, pydantic model, enum and exception class found that is
        not registered yet (an existing entry, with its custom codec, is kept).

        Args:
            schema: a class or a type annotation, e.g. a graph's state schema.

        Returns:
            The classes newly registered, in the order they were found.
        """
        found: list[type] = []
        seen: dict[int, Any] = {}  # id -> object; holding the object keeps its id unique
        stack = [schema]
        while stack:
            tp = stack.pop()
            if id(tp) in seen:
                continue
            seen[id(tp)] = tp
            children = _schema_children(tp)
            if isinstance(tp, type) and has_default_codec(tp) and tp not in self:
                self.register(tp)
                found.append(tp)
            stack.extend(reversed(children))
        return found

    def copy(self) -> TypeRegistry:
        """An independent registry with the same entries."""
        new = TypeRegistry.__new__(TypeRegistry)
        new._by_type = dict(self._by_type)
        new._by_name = dict(self._by_name)
        new._errors = dict(self._errors)
        new._error_names = dict(self._error_names)
        return new

    def name_of(self, cls: type) -> str | None:
        """The name ``cls`` is stored under, or ``None`` if it is not registered."""
        entry = self._by_type.get(cls)
        return entry.name if entry is not None else self._error_names.get(cls)

    def __contains__(self, item: object) -> bool:
        """``cls in registry`` or ``"stored.Name" in registry``; native types count."""
        if isinstance(item, str):
            return item in self._by_name or item in self._errors
        return item in NATIVE_TYPES or item in self._by_type or item in self._error_names

    def __repr__(self) -> str:
        return f"<TypeRegistry: {len(self._by_name) + len(self._errors)} names>"

    def _check_name(self, cls: type, name: str) -> None:
        held = self._by_name.get(name)
        other: type | None = held.cls if held is not None else self._errors.get(name)
        if other is None or other is cls:
            return
        if qualified_name(other) == qualified_name(cls):  # a redefinition takes over
            return
        raise ValueError(
            f"cannot register {qualified_name(cls)} as {name!r}: that name belongs to "
            f"{qualified_name(other)}. Pass a different name= to register()."
        )

    def _forget(self, cls: type) -> None:
        entry = self._by_type.pop(cls, None)
        if entry is not None and self._by_name.get(entry.name) is entry:
            del self._by_name[entry.name]
        error_name = self._error_names.pop(cls, None)
        if error_name is not None and self._errors.get(error_name) is cls:
            del self._errors[error_name]


def default_registry() -> TypeRegistry:
    """The process-wide registry used by every `Serializer` created without one.

    Libraries register their own types here at import time, e.g.
    ``default_registry().register(Send, name="stepgraph.Send", encode=..., decode=...)``;
    registrations take effect for existing serializers too.
    """
    return _DEFAULT


# -- default codecs -------------------------------------------------------------------


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields") and hasattr(cls, "_make")


def has_default_codec(cls: type) -> bool:
    return (
        issubclass(cls, (enum.Enum, BaseModel, BaseException))
        or dataclasses.is_dataclass(cls)
        or _is_namedtuple(cls)
    )


def _default_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    if issubclass(cls, enum.Enum):
        return attrgetter("value"), cls
    if issubclass(cls, BaseModel):
        return _pydantic_codec(cls)
    if dataclasses.is_dataclass(cls):
        return _dataclass_codec(cls)
    if _is_namedtuple(cls):
        return list, cls._make  # type: ignore[attr-defined]
    raise TypeError(
        f"no default way to store {qualified_name(cls)}: pass encode= and decode= to "
        "register() (dataclasses, namedtuples, pydantic models and enums need neither)"
    )


def _dataclass_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    init = frozenset(f.name for f in fields if f.init)
    late = tuple(f.name for f in fields if not f.init)

    def encode(obj: Any) -> dict[str, Any]:
        return {n: getattr(obj, n) for n in names}

    def decode(data: dict[str, Any]) -> Any:
        # Through the constructor (so __post_init__ runs); fields stored by an older
        # version of the class that it no longer has are dropped, new ones default.
        if not late and data.keys() <= init:
            return cls(**data)
        obj = cls(**{k: v for k, v in data.items() if k in init})
        for n in late:
            if n in data:
                object.__setattr__(obj, n, data[n])
        return obj

    return encode, decode


_FIELDS_SET = "__fields_set__"  # pydantic field names cannot start with "_"


def _pydantic_codec(cls: type[BaseModel]) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    def encode(obj: BaseModel) -> dict[str, Any]:
        data = dict(obj.__dict__)
        if data.keys() != obj.model_fields_set:  # as model_construct would guess
            data[_FIELDS_SET] = sorted(obj.model_fields_set)
        if obj.__pydantic_extra__:
            data.update(obj.__pydantic_extra__)
        return data

    def decode(data: dict[str, Any]) -> BaseModel:
        # model_construct: the values were valid when dumped; no validator reruns.
        fields_set = data.pop(_FIELDS_SET, None)
        return cls.model_construct(None if fields_set is None else set(fields_set), **data)

    return encode, decode


# -- schema walking ---------------------------------------------------------------------


def _hints(cls: type) -> list[Any]:
    try:
        return list(typing.get_type_hints(cls, include_extras=True).values())
    except Exception:  # unresolvable forward references: use what is already resolved
        return [a for a in getattr(cls, "__annotations__", {}).values() if not isinstance(a, str)]


def _schema_children(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        return [get_args(tp)[0]]
    if origin is Literal:
        return [type(a) for a in get_args(tp) if isinstance(a, enum.Enum)]
    if origin is not None:
        return [origin, *get_args(tp)]
    if isinstance(tp, TypeVar):
        return [b for b in (tp.__bound__, *tp.__constraints__) if b is not None]
    if type(tp).__name__ == "TypeAliasType":  # `type X = ...` (Python 3.12+)
        return [tp.__value__]
    if not isinstance(tp, type) or tp in NATIVE_TYPES:
        return []
    if issubclass(tp, BaseModel):
        return [f.annotation for f in tp.model_fields.values()]
    if typing.is_typeddict(tp) or dataclasses.is_dataclass(tp) or _is_namedtuple(tp):
        return _hints(tp)
    return []


# -- the standard library ----------------------------------------------------------------


def _zone_key(zone: ZoneInfo) -> str:
    if zone.key is None:
        raise ValueError("a ZoneInfo made from a file has no key to store")
    return zone.key


def _register_stdlib(registry: TypeRegistry) -> None:
    reg = registry.register
    reg(deque, encode=lambda d: [list(d), d.maxlen], decode=lambda p: deque(p[0], p[1]))
    reg(OrderedDict, encode=dict, decode=OrderedDict)
    reg(Counter, encode=dict, decode=Counter)
    reg(range, encode=lambda r: [r.start, r.stop, r.step], decode=lambda p: range(*p))
    reg(complex, encode=lambda c: [c.real, c.imag], decode=lambda p: complex(*p))
    reg(
        fractions.Fraction,
        encode=lambda f: [f.numerator, f.denominator],
        decode=lambda p: fractions.Fraction(*p),
    )
    reg(ZoneInfo, encode=_zone_key, decode=ZoneInfo)
    for cls in (
        ipaddress.IPv4Address,
        ipaddress.IPv6Address,
        ipaddress.IPv4Network,
        ipaddress.IPv6Network,
        ipaddress.IPv4Interface,
        ipaddress.IPv6Interface,
    ):
        reg(cls, encode=str, decode=cls)
    for obj in vars(builtins).values():
        if isinstance(obj, type) and issubclass(obj, BaseException):
            reg(obj)


_DEFAULT = TypeRegistry()
