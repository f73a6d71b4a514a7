"""Values to bytes and back: msgpack plus an explicit registry of extension types.

Byte format of one value::

    b"SG"    magic
    0x01     format version
    flags    bit 0: encrypted; the other bits must be 0
    body     one msgpack object, or, when encrypted, the cipher's output for it
             (`AesGcmCipher`: 12-byte nonce + ciphertext + 16-byte tag, with the
             4 header bytes as associated data)

Plain data (dict, list, str, int, float, bool, None, bytes) is msgpack's own and is
packed by msgpack's C code without any Python call. Everything else is a msgpack
extension type whose data is itself msgpack:

    code  type                                   payload
    1     tuple                                  [items]
    2     set                                    [items]
    3     frozenset                              [items]
    4     int beyond 64 bits                     signed big-endian bytes
    5     datetime                               [y, mo, d, h, mi, s, us, tzinfo, fold]
    6     date                                   [y, mo, d]
    7     time                                   [h, mi, s, us, tzinfo, fold]
    8     timedelta                              [days, seconds, microseconds]
    9     timezone                               [offset timedelta, name?]
    10    UUID                                   16 bytes
    11    Decimal                                str
    12    Path, PurePosixPath, PureWindowsPath   [0 | 1 | 2, str]
    13    exception                              [type name, [args], message, [notes], exact?]
    14    registered type                        [name, encode(obj)]

Strings with lone surrogates round-trip (they are stored as in ``surrogatepass``).
``bytearray`` and ``memoryview`` load as ``bytes``; every other supported value loads
as the same type, however nested (tuples stay tuples, int and tuple dict keys stay).
"""

from __future__ import annotations

import datetime as dt
import decimal
import pathlib
import reprlib
import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import msgpack

from ._serde_registry import (
    StoredError,
    TypeRegistry,
    default_registry,
    has_default_codec,
    qualified_name,
)
from .errors import DeserializationError, SerializationError

__all__ = ["Cipher", "Serializer"]

MAGIC = b"SG"
FORMAT_VERSION = 1
FLAG_ENCRYPTED = 0x01
_PLAIN_HEADER = MAGIC + bytes((FORMAT_VERSION, 0))
_SEALED_HEADER = MAGIC + bytes((FORMAT_VERSION, FLAG_ENCRYPTED))
_HEADER_LEN = 4

TUPLE, SET, FROZENSET, BIGINT, DATETIME, DATE, TIME, TIMEDELTA = range(1, 9)
TIMEZONE, UUID, DECIMAL, PATH, ERROR, NAMED = range(9, 15)

_PATH_KINDS: tuple[Callable[[str], pathlib.PurePath], ...] = (
    pathlib.Path,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
)


def _date_fields(d: dt.date) -> list[Any]:
    return [d.year, d.month, d.day]


def _time_fields(t: dt.time | dt.datetime) -> list[Any]:
    return [t.hour, t.minute, t.second, t.microsecond, t.tzinfo, t.fold]


_ENCODERS: dict[type, tuple[int, Callable[[Any], Any]]] = {
    tuple: (TUPLE, list),
    set: (SET, list),
    frozenset: (FROZENSET, list),
    int: (BIGINT, lambda n: n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True)),
    dt.datetime: (DATETIME, lambda d: [*_date_fields(d), *_time_fields(d)]),
    dt.date: (DATE, _date_fields),
    dt.time: (TIME, _time_fields),
    dt.timedelta: (TIMEDELTA, lambda t: [t.days, t.seconds, t.microseconds]),
    dt.timezone: (TIMEZONE, lambda z: list(z.__getinitargs__())),
    uuid.UUID: (UUID, lambda u: u.bytes),
    decimal.Decimal: (DECIMAL, str),
    pathlib.PosixPath: (PATH, lambda p: [0, str(p)]),
    pathlib.WindowsPath: (PATH, lambda p: [0, str(p)]),
    pathlib.PurePosixPath: (PATH, lambda p: [1, str(p)]),
    pathlib.PureWindowsPath: (PATH, lambda p: [2, str(p)]),
    StoredError: (ERROR, lambda e: [e.type_name, list(e.args), e.message, list(e.notes)]),
}


def _items(payload: Any) -> list[Any]:
    if type(payload) is not list:
        raise ValueError(f"expected an array, found {type(payload).__name__}")
    return payload


def _text(payload: Any) -> str:
    if type(payload) is not str:
        raise ValueError(f"expected a string, found {type(payload).__name__}")
    return payload


def _datetime(*f: Any) -> dt.datetime:
    if len(f) != 9:
        raise ValueError("malformed datetime")
    return dt.datetime(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], fold=f[8])


def _time(h: int, mi: int, s: int, us: int, tz: dt.tzinfo | None, fold: int) -> dt.time:
    return dt.time(h, mi, s, us, tz, fold=fold)


_DECODERS: dict[int, Callable[[Any], Any]] = {
    TUPLE: lambda p: tuple(_items(p)),
    SET: lambda p: set(_items(p)),
    FROZENSET: lambda p: frozenset(_items(p)),
    BIGINT: lambda p: int.from_bytes(p, "big", signed=True),
    DATETIME: lambda p: _datetime(*_items(p)),
    DATE: lambda p: dt.date(*_items(p)),
    TIME: lambda p: _time(*_items(p)),
    TIMEDELTA: lambda p: dt.timedelta(*_items(p)),
    TIMEZONE: lambda p: dt.timezone(*_items(p)),
    UUID: lambda p: uuid.UUID(bytes=p),
    DECIMAL: lambda p: decimal.Decimal(_text(p)),
    PATH: lambda p: _PATH_KINDS[_items(p)[0]](p[1]),
}

_SCALARS = frozenset({type(None), bool, int, float, str, bytes, bytearray, memoryview})
# msgpack reads its own timestamp extension (code -1) before our hook could refuse it;
# timestamp=3 makes it an aware UTC datetime, a type of the format, never msgpack's own.
_UNPACK_OPTIONS: dict[str, Any] = {
    "strict_map_key": False,
    "unicode_errors": "surrogatepass",
    "timestamp": 3,
}
MAX_EXT_DEPTH = 64
"""How deeply extension values (tuples, sets, registered types, ...) may nest.

Each level is a nested msgpack call on the C stack: a limit keeps a crafted blob from
overflowing it, and ``dumps`` refuses what ``loads`` would refuse."""


_reprs = reprlib.Repr()
_reprs.maxstring = _reprs.maxother = 200


def _short_repr(obj: Any) -> str:
    try:
        return _reprs.repr(obj)
    except Exception:
        return f"<unprintable {qualified_name(type(obj))}>"


def _register_hint(cls: type, registry: TypeRegistry) -> str:
    where = "default_registry()" if registry is default_registry() else "the serializer's registry"
    how = "" if has_default_codec(cls) else ", encode=..., decode=..."
    return (
        f"Register it before saving: {where}.register({cls.__name__}{how}), or "
        "declare it in the graph's state schema so that compile() registers it."
    )


class Cipher(Protocol):
    """Authenticated encryption for serialized values (see `AesGcmCipher`).

    ``decrypt`` must raise if the data or the associated data was altered.
    """

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes: ...


class _Unsupported(TypeError):
    pass


class _TooDeep(ValueError):
    pass


class _LoadFailure(Exception):
    def __init__(self, code: int, name: str | None, problem: str, hint: str | None = None):
        super().__init__(problem)
        self.code, self.name, self.problem, self.hint = code, name, problem, hint


class _Packers(threading.local):
    """Per thread, one reusable msgpack packer per nesting depth of extension values."""

    def __init__(self) -> None:
        self.stack: list[msgpack.Packer] = []
        self.depth = 0


_new_ext = partial(tuple.__new__, msgpack.ExtType)  # ExtType() validates in Python: slow
_BIG_BUFFER = 1 << 16  # a packer that grew past this is dropped, not kept per thread


class _Encoder:
    """msgpack's ``default`` hook: called by the C packer for anything not plain."""

    def __init__(self, registry: TypeRegistry, unicode_errors: str | None) -> None:
        self.registry = registry
        self._options = {
            "default": self.default,
            "strict_types": True,
            "unicode_errors": unicode_errors,
        }
        self.pack_top = partial(msgpack.packb, **self._options)
        self._packers = _Packers()

    def payload(self, obj: Any) -> tuple[int, Any]:
        spec = _ENCODERS.get(type(obj))
        if spec is not None:
            return spec[0], spec[1](obj)
        entry = self.registry._by_type.get(type(obj))
        if entry is not None:
            return NAMED, [entry.name, entry.encode(obj)]
        if isinstance(obj, BaseException):
            name = self.registry._error_names.get(type(obj)) or qualified_name(type(obj))
            try:
                message = str(obj)
            except Exception:
                message = f"<unprintable {name}>"
            notes = getattr(obj, "__notes__", None)
            notes = [str(n) for n in notes] if isinstance(notes, list) else []
            return ERROR, [name, list(obj.args), message, notes]
        raise _Unsupported(qualified_name(type(obj)))

    def pack(self, payload: Any) -> bytes:
        """Pack a nested payload with this thread's packer for the current depth."""
        packers = self._packers
        depth = packers.depth
        stack = packers.stack
        if depth == len(stack):
            stack.append(msgpack.Packer(buf_size=1024, **self._options))
        if depth >= MAX_EXT_DEPTH:
            raise _TooDeep(
                f"extension values (tuples, sets, registered objects) nest more than "
                f"{MAX_EXT_DEPTH} levels deep"
            )
        packers.depth = depth + 1
        try:
            data: bytes = stack[depth].pack(payload)
        except BaseException:
            del stack[depth:]
            raise
        finally:
            packers.depth = depth
        if len(data) > _BIG_BUFFER:
            del stack[depth:]
        return data

    def default(self, obj: Any) -> msgpack.ExtType:
        code, payload = self.payload(obj)
        try:
            return _new_ext((code, self.pack(payload)))
        except UnicodeEncodeError:
            raise
        except _TooDeep:
            raise
        except (ValueError, TypeError, OverflowError, RecursionError):
            if code != ERROR:
                raise
        # An exception whose args cannot be stored keeps their reprs, and loads as a
        # StoredError: the args are no longer the real ones.
        payload[1] = [_short_repr(a) for a in payload[1]]
        return _new_ext((ERROR, self.pack([*payload, False])))


class _Decoder:
    """msgpack's ``ext_hook``: rebuilds natives, registered types and exceptions."""

    def __init__(self, registry: TypeRegistry) -> None:
        self.registry = registry
        self.unpack = partial(msgpack.unpackb, ext_hook=self.ext_hook, **_UNPACK_OPTIONS)
        self._depth = threading.local()

    def ext_hook(self, code: int, data: bytes) -> Any:
        local = self._depth
        depth = getattr(local, "n", 0)
        if depth >= MAX_EXT_DEPTH:
            raise _LoadFailure(
                code, None, f"extension values nest more than {MAX_EXT_DEPTH} levels deep"
            )
        local.n = depth + 1
        try:
            return self._ext(code, data)
        finally:
            local.n = depth

    def _ext(self, code: int, data: bytes) -> Any:
        payload = self.unpack(data)
        if code == NAMED:
            name, value = _items(payload)
            entry = self.registry._by_name.get(name) if type(name) is str else None
            if entry is None:
                raise _LoadFailure(
                    code,
                    str(name),
                    f"the data holds a {name!r}, which is not a registered type; refusing "
                    "to load it (stored names are never imported).",
                    f"If {name!r} is yours, register it: default_registry().register(...).",
                )
            try:
                return entry.decode(value)
            except Exception as exc:
                raise _LoadFailure(code, name, f"decoding {name!r} failed: {exc!r}") from exc
        if code == ERROR:
            return self.error(payload)
        decode = _DECODERS.get(code)
        if decode is None:
            raise _LoadFailure(code, None, f"unknown extension code {code}")
        return decode(payload)

    def error(self, payload: Any) -> BaseException | StoredError:
        name, args, message, notes, *rest = _items(payload)
        if type(name) is not str or type(message) is not str:
            raise ValueError("malformed exception record")
        args, notes = tuple(_items(args)), tuple(str(n) for n in _items(notes))
        cls = self.registry._errors.get(name) if rest in ([], [True]) else None
        if cls is not None:
            try:
                exc = cls(*args)
                exc.args = args
                if notes:
                    exc.__notes__ = list(notes)
                return exc
            except Exception:  # a constructor that does not take its own args
                pass
        return StoredError(name, args, message, notes)


class Serializer:
    """Turns checkpoint values into bytes and back, safely.

    Plain data goes straight through msgpack's C code; other types must be built into
    the format or registered in ``registry``. Loading never imports a module, never
    unpickles, and fails closed: unknown type names and damaged bytes raise
    `DeserializationError` instead of returning a partial value.

    Args:
        registry: the types allowed in the data; defaults to `default_registry()`
            (shared and live, so later registrations apply).
        cipher: encrypt every value (e.g. ``AesGcmCipher(key)``); encrypted data can
            only be loaded with a cipher.
        allow_unencrypted: with a cipher, also load data written without one (while
            migrating a store to encryption). Off by default, so that bytes written by
            someone without the key are refused.

    Example:
        >>> serde = Serializer()
        >>> serde.loads(serde.dumps({"point": (1, 2), 3: {"a", "b"} - {"b"}}))
        {'point': (1, 2), 3: {'a'}}
    """

    def __init__(
        self,
        registry: TypeRegistry | None = None,
        *,
        cipher: Cipher | None = None,
        allow_unencrypted: bool = False,
    ) -> None:
        self.registry = default_registry() if registry is None else registry
        self.cipher = cipher
        self.allow_unencrypted = allow_unencrypted
        self._encoder = _Encoder(self.registry, None)
        self._decoder = _Decoder(self.registry)

    def dumps(self, value: Any, *, path: str = "state") -> bytes:
        """Serialize ``value``.

        Args:
            value: any nesting of plain data, built-in types and registered types.
            path: where the value lives, for error messages (``"state.messages"``).

        Returns:
            The header followed by the (possibly encrypted) msgpack body.

        Raises:
            SerializationError: some part of ``value`` has an unregistered type (the
                error names its path and type), or the value nests too deeply.
        """
        try:
            body = self._encoder.pack_top(value)
        except UnicodeEncodeError:  # lone surrogates: rare, so not on the fast path
            body = self._pack_surrogates(value, path)
        except Exception as exc:
            raise self._dump_error(value, path, exc) from None
        if self.cipher is None:
            return _PLAIN_HEADER + body
        return _SEALED_HEADER + self.cipher.encrypt(body, _SEALED_HEADER)

    def loads(self, data: bytes, *, path: str = "state") -> Any:
        """Deserialize bytes made by `dumps`.

        Args:
            data: the bytes (``bytes``, ``bytearray`` or ``memoryview``).
            path: where the value lives, for error messages.

        Returns:
            The value, with the same types as the one dumped.

        Raises:
            DeserializationError: the data names an unregistered type (the error
                names its path and the stored name), is corrupt, truncated, tampered
                with, encrypted without a cipher here, or of an unknown version.
        """
        body = self._open(bytes(data), path)
        try:
            return self._decoder.unpack(body)
        except _LoadFailure as failure:
            at = _locate_load(body, path, failure.code, failure.name)
            raise DeserializationError(
                failure.problem, path=at, type_name=failure.name, hint=failure.hint
            ) from failure.__cause__
        except Exception as exc:
            problem = f"the data is corrupt or truncated ({type(exc).__name__}: {exc})"
            raise DeserializationError(problem, path=path) from exc

    def dumps_typed(self, value: Any, *, path: str = "state") -> tuple[str, bytes]:
        """`dumps` for savers that store a type tag beside the bytes.

        Returns:
            ``("bytes", value)`` for a plain ``bytes`` value when not encrypting, and
            ``("stepgraph", dumps(value))`` otherwise.
        """
        if type(value) is bytes and self.cipher is None:
            return "bytes", value
        return "stepgraph", self.dumps(value, path=path)

    def loads_typed(self, data: tuple[str, bytes], *, path: str = "state") -> Any:
        """Load a ``(type_tag, bytes)`` pair made by `dumps_typed`.

        Raises:
            DeserializationError: as `loads`, or for an unknown tag.
        """
        tag, blob = data
        if tag == "stepgraph":
            return self.loads(blob, path=path)
        if tag == "bytes" and (self.cipher is None or self.allow_unencrypted):
            return bytes(blob)
        raise DeserializationError(f"cannot load type tag {tag!r}", path=path, type_name=tag)

    def __repr__(self) -> str:
        cipher = "" if self.cipher is None else f", cipher={self.cipher!r}"
        return f"Serializer({self.registry!r}{cipher})"

    def _pack_surrogates(self, value: Any, path: str) -> bytes:
        encoder = _Encoder(self.registry, "surrogatepass")
        try:
            return bytes(encoder.pack_top(value))
        except Exception as exc:
            raise self._dump_error(value, path, exc) from None

    def _dump_error(self, value: Any, path: str, exc: Exception) -> SerializationError:
        found = _locate_dump(self._encoder, value, path)
        if found is not None:
            at, cls, problem = found
            hint = _register_hint(cls, self.registry) if problem is None else None
            problem = problem or f"cannot serialize a {qualified_name(cls)}: it is not registered."
            return SerializationError(problem, path=at, type_name=qualified_name(cls), hint=hint)
        problem = f"cannot serialize the value ({type(exc).__name__}: {exc})"
        if isinstance(exc, _TooDeep):
            problem = f"cannot serialize the value: {exc}"
        if isinstance(exc, ValueError | RecursionError) and "recursion" in str(exc).lower():
            problem = "cannot serialize the value: it nests too deeply or contains itself"
        return SerializationError(problem, path=path)

    def _open(self, data: bytes, path: str) -> bytes | memoryview:
        if len(data) < _HEADER_LEN or data[:2] != MAGIC:
            raise DeserializationError(
                "not stepgraph data (the magic bytes are missing)", path=path
            )
        version, flags = data[2], data[3]
        if version != FORMAT_VERSION:
            raise DeserializationError(
                f"format version {version} is not supported (this stepgraph reads "
                f"version {FORMAT_VERSION})",
                path=path,
            )
        if flags & ~FLAG_ENCRYPTED:
            raise DeserializationError(f"unknown header flags 0x{flags:02x}", path=path)
        if flags & FLAG_ENCRYPTED:
            if self.cipher is None:
                raise DeserializationError(
                    "the data is encrypted and this Serializer has no cipher.",
                    path=path,
                    hint="Pass Serializer(cipher=AesGcmCipher(key)) with the key it was made with.",
                )
            try:
                return self.cipher.decrypt(data[_HEADER_LEN:], data[:_HEADER_LEN])
            except Exception as exc:
                problem = "cannot decrypt: wrong key, or the data was altered"
                raise DeserializationError(problem, path=path) from exc
        if self.cipher is not None and not self.allow_unencrypted:
            raise DeserializationError(
                "the data is not encrypted, and this Serializer only loads encrypted data.",
                path=path,
                hint="Pass allow_unencrypted=True while migrating a store to encryption.",
            )
        return memoryview(data)[_HEADER_LEN:]


# -- finding the path of a bad value (only after a failure: walking costs) ------------


def _segment(key: Any) -> str:
    if type(key) is str and key.isidentifier():
        return f".{key}"
    return f"[{_short_repr(key)}]"


def _locate_dump(encoder: _Encoder, value: Any, path: str) -> tuple[str, type, str | None] | None:
    """The first value (depth first) that cannot be encoded: (path, type, problem)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    keep: list[Any] = []  # holds walked objects so that their ids stay unique
    seen: set[int] = set()
    while stack:
        obj, at = stack.pop()
        cls = type(obj)
        if cls in _SCALARS or id(obj) in seen:
            continue
        seen.add(id(obj))
        keep.append(obj)
        if cls is dict:
            for key, item in reversed(obj.items()):
                stack.append((item, at + _segment(key)))
                stack.append((key, f"{at}[key {_short_repr(key)}]"))
            continue
        if cls is list:
            stack.extend((item, f"{at}[{i}]") for i, item in reversed(list(enumerate(obj))))
            continue
        try:
            code, payload = encoder.payload(obj)
        except _Unsupported:
            return at, cls, None
        except Exception as exc:
            return at, cls, f"encoding a {qualified_name(cls)} failed: {exc!r}"
        if code == NAMED:
            stack.append((payload[1], at))
        elif code != ERROR:
            stack.append((payload, at))
    return None


class _Raw:
    """An extension value seen by the tolerant walk: code, stored name, payload."""

    __slots__ = ("code", "name", "payload")

    def __init__(self, code: int, data: bytes) -> None:
        self.code, self.name, self.payload = code, None, None
        depth = getattr(_raw_depth, "n", 0)
        if depth >= MAX_EXT_DEPTH:
            return  # as deep as loading goes: the walk stops here too
        _raw_depth.n = depth + 1
        try:
            self.payload = _tolerant_unpack(data)
        except Exception:
            return
        finally:
            _raw_depth.n = depth
        if code in (NAMED, ERROR) and type(self.payload) is list and self.payload:
            self.name = self.payload[0]

    def __repr__(self) -> str:
        return f"<{self.name}>" if type(self.name) is str else f"<extension {self.code}>"


_tolerant_unpack = partial(msgpack.unpackb, ext_hook=_Raw, **_UNPACK_OPTIONS)
_raw_depth = threading.local()


def _locate_load(body: bytes | memoryview, path: str, code: int, name: str | None) -> str:
    """The path of the first extension value with this code and name."""
    try:
        tree = _tolerant_unpack(body)
    except Exception:
        return path
    stack: list[tuple[Any, str]] = [(tree, path)]
    while stack:
        obj, at = stack.pop()
        if type(obj) is dict:
            for key, item in reversed(obj.items()):
                stack.append((item, at + _segment(key)))
                stack.append((key, f"{at}[key]"))
        elif type(obj) is list:
            stack.extend((item, f"{at}[{i}]") for i, item in reversed(list(enumerate(obj))))
        elif type(obj) is _Raw:
            if obj.code == code and (name is None or obj.name == name):
                return at
            inner = obj.payload
            if obj.code == NAMED and type(inner) is list and len(inner) == 2:
                stack.append((inner[1], at))
            elif obj.code in (TUPLE, SET, FROZENSET):
                stack.append((inner, at))
    return path
