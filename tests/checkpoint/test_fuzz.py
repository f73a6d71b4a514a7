"""Fuzzing the loader: damaged, truncated, tampered or forged bytes fail closed.

Whatever bytes `Serializer.loads` is given, it returns a value or raises
`DeserializationError`, never anything else, and it never imports a module,
evaluates code or unpickles while doing so (a guard replaces those entry points for
the duration of every load). Round trips of intact data live in test_serde.py.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime as dt
import decimal
import importlib
import marshal
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepgraph.checkpoint import (
    AesGcmCipher,
    DeserializationError,
    Serializer,
    StoredError,
    TypeRegistry,
)

HEADER = b"SG\x01\x00"
NAMED = 14  # extension code of a registered type (see _serde's byte format)
ERROR = 13  # extension code of an exception record

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclasses.dataclass
class Record:
    name: str
    tags: tuple[str, ...] = ()
    extra: Any = None


class QuotaExceeded(Exception):
    pass


REGISTRY = TypeRegistry()
REGISTRY.register(Record, name="fuzz.Record")
REGISTRY.register(QuotaExceeded, name="fuzz.QuotaExceeded")
SERDE = Serializer(REGISTRY)


# -- the guard: loading must run no code ------------------------------------------------


class CodeWasRun(BaseException):
    """Raised by the guard; a BaseException so that no ``except Exception`` hides it."""


@contextlib.contextmanager
def no_code_runs(*, allow_loaded: bool = False) -> Iterator[None]:
    """Fail if anything inside imports a module, evaluates code or unpickles.

    Args:
        allow_loaded: let ``import`` statements through for modules that are already
            loaded (a dictionary look-up that runs no module code). The ``cryptography``
            package's compiled code looks up ``cryptography.exceptions`` when it reports
            a bad tag, and aborts the process if that fails.
    """
    calls: list[str] = []
    real_import = builtins.__import__

    def forbid(name: str) -> Callable[..., NoReturn]:
        def blocked(*args: Any, **kwargs: Any) -> NoReturn:
            calls.append(f"{name}({args[0]!r}...)" if args else f"{name}()")
            raise CodeWasRun(f"loading called {calls[-1]}")

        return blocked

    def guarded_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if allow_loaded and name in sys.modules:
            return real_import(name, *args, **kwargs)
        return forbid("builtins.__import__")(name)

    replacements: list[tuple[Any, str, Any]] = [
        (builtins, "__import__", guarded_import),
        *(
            (obj, attr, forbid(f"{obj.__name__}.{attr}"))
            for obj, attr in [
                (builtins, "eval"),
                (builtins, "exec"),
                (builtins, "compile"),
                (importlib, "import_module"),
                (pickle, "loads"),
                (pickle, "load"),
                (pickle, "Unpickler"),
                (marshal, "loads"),
            ]
        ),
    ]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in replacements]
    for obj, attr, replacement in replacements:
        setattr(obj, attr, replacement)
    try:
        yield
    finally:
        for obj, attr, original in saved:
            setattr(obj, attr, original)
    assert not calls, f"loading ran code: {calls}"


def load(data: bytes, serde: Serializer = SERDE) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, error)``; any other exception fails the test."""
    with no_code_runs(allow_loaded=serde.cipher is not None):
        try:
            return True, serde.loads(data)
        except DeserializationError as err:
            outcome: tuple[bool, Any] = (False, err)
    assert str(outcome[1]).startswith(outcome[1].path)
    return outcome


def test_the_guard_catches_imports_and_eval() -> None:
    for attempt in (
        lambda: __import__("json"),
        lambda: importlib.import_module("json"),
        lambda: eval("1"),
        lambda: pickle.loads(pickle.dumps(1)),
    ):
        with pytest.raises(CodeWasRun), no_code_runs():
            attempt()
    with pytest.raises(CodeWasRun), no_code_runs(allow_loaded=True):
        __import__("a_module_nobody_has_loaded")
    with no_code_runs(allow_loaded=True):
        __import__("json")
    assert builtins.__import__("json") is not None  # restored


# -- values to damage ---------------------------------------------------------------------

_tz = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-3, minutes=-30), "X")])
_hashable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
    | st.binary(max_size=6)
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.dates()
    | st.datetimes(timezones=_tz),
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=5,
)
_errors = st.builds(ValueError, st.text(max_size=5)) | st.builds(QuotaExceeded, st.integers())
values = st.recursive(
    _hashable | st.timedeltas() | _errors,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.dictionaries(_hashable, inner, max_size=3)
        | st.sets(_hashable, max_size=3)
        | st.builds(Record, st.text(max_size=4), st.lists(st.text(max_size=3)).map(tuple), inner)
    ),
    max_leaves=12,
)

EXAMPLES: list[Any] = [
    {"messages": [{"role": "user", "text": "hi"}], "count": 3, "done": False},
    (1, ("nested", (2.5, None)), [b"\x00\xff"]),
    {frozenset({1, 2}), ("a", 1), -(2**70)},
    {"when": dt.datetime(2024, 3, 4, 5, 6, 7, 8, tzinfo=dt.UTC), "day": dt.date(2024, 1, 1)},
    [uuid.UUID(int=12345), decimal.Decimal("-1.50E+3"), dt.timedelta(days=-2, seconds=3)],
    {1: Record("r", ("x", "y"), {"deep": [Record("inner")]}), (2, 3): "tuple key"},
    [ValueError("bad", 3), QuotaExceeded("over"), KeyError("k")],
    "plain text é😀",
]


# -- random bytes, truncations, flips --------------------------------------------------------


@FUZZ
@given(st.binary(max_size=64) | st.binary(max_size=64).map(HEADER.__add__))
def test_random_bytes_fail_closed(data: bytes) -> None:
    load(data)
    load(data, Serializer())


@FUZZ
@given(values, st.data())
def test_truncated_data_is_refused(value: Any, data: st.DataObject) -> None:
    blob = SERDE.dumps(value)
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    ok, _ = load(blob[:cut])
    assert not ok, "a strict prefix of one msgpack object cannot be complete"


@FUZZ
@given(values, st.data())
def test_flipped_bytes_fail_closed(value: Any, data: st.DataObject) -> None:
    blob = bytearray(SERDE.dumps(value))
    at = data.draw(st.integers(0, len(blob) - 1), label="at")
    blob[at] ^= data.draw(st.integers(1, 255), label="mask")
    load(bytes(blob))


@FUZZ
@given(values, st.data())
def test_spliced_bytes_fail_closed(value: Any, data: st.DataObject) -> None:
    blob = SERDE.dumps(value)
    start = data.draw(st.integers(0, len(blob)), label="start")
    end = data.draw(st.integers(start, min(len(blob), start + 8)), label="end")
    filler = data.draw(st.binary(max_size=8), label="filler")
    load(blob[:start] + filler + blob[end:])


@pytest.mark.parametrize("value", EXAMPLES, ids=range(len(EXAMPLES)))
def test_every_truncation_and_flip_of_an_example(value: Any) -> None:
    blob = SERDE.dumps(value)
    assert load(blob)[0]
    for cut in range(len(blob)):
        assert not load(blob[:cut])[0]
    for at in range(len(blob)):
        for mask in (0x01, 0xFF):
            damaged = bytearray(blob)
            damaged[at] ^= mask
            load(bytes(damaged))


# -- forged extension values -------------------------------------------------------------------

_plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what msgpack itself can hold
    | st.floats()
    | st.text(max_size=6)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


def _ext(code: int, payload: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(payload))


_names = st.sampled_from(["fuzz.Record", "fuzz.QuotaExceeded", "builtins.ValueError", "os.system"])
forged = st.recursive(
    _plain,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.builds(_ext, st.integers(0, 127), inner)
        | st.builds(_ext, st.integers(1, 14), inner)
        | st.builds(lambda n, p: _ext(NAMED, [n, p]), _names, inner)
        | st.builds(
            lambda n, a, m: _ext(ERROR, [n, a, m, []]), _names | st.text(max_size=8), inner, inner
        )
    ),
    max_leaves=10,
)


@FUZZ
@given(forged)
def test_forged_extension_values_fail_closed(payload: Any) -> None:
    ok, value = load(HEADER + msgpack.packb(payload))
    if ok:  # whatever loads is a value of the format, so it can be saved again
        SERDE.dumps(value)


@pytest.mark.parametrize(
    "name", ["os.system", "subprocess.Popen", "builtins.eval", "pickle.loads", "posix.system"]
)
def test_a_stored_type_name_is_never_imported(name: str) -> None:
    blob = HEADER + msgpack.packb({"cmd": _ext(NAMED, [name, ["echo pwned"]])})
    ok, err = load(blob)
    assert not ok
    assert err.type_name == name and err.path == "state.cmd"
    assert repr(name) in str(err)


def test_an_exception_record_naming_a_module_loads_as_data() -> None:
    blob = HEADER + msgpack.packb(_ext(ERROR, ["os.system", ["rm -rf /"], "boom", []]))
    ok, value = load(blob)
    assert ok and value == StoredError("os.system", ("rm -rf /",), "boom", ())


@pytest.mark.parametrize(
    "body",
    [
        b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items
        b"\xdf\xff\xff\xff\xff",  # a map claiming as many
        b"\xc6\xff\xff\xff\xff",  # 4 GiB of bytes
        msgpack.packb(msgpack.ExtType(99, b"")),  # an unknown extension code
        msgpack.packb(_ext(NAMED, "not a pair")),
        msgpack.packb(_ext(NAMED, [5, "a name that is not a string"])),
        msgpack.packb(_ext(NAMED, ["fuzz.Record", "not a dict"])),
        msgpack.packb(_ext(ERROR, "not a record")),
        msgpack.packb(_ext(5, [2024, 13, 1, 0, 0, 0, 0, None, 0])),  # month 13
        msgpack.packb(_ext(12, [7, "/tmp"])),  # unknown path kind
        msgpack.packb([1, 2]) + b"\x00",  # trailing bytes
    ],
    ids=[
        "huge array",
        "huge map",
        "huge bin",
        "unknown code",
        "named not a pair",
        "named bad name",
        "named bad payload",
        "error not a record",
        "bad datetime",
        "bad path kind",
        "trailing bytes",
    ],
)
def test_crafted_bodies_are_refused(body: bytes) -> None:
    ok, _ = load(HEADER + body)
    assert not ok


# Deep nesting is checked in a child process: a crash there must fail one test, not
# take the whole test run down with it.
_NESTED_FORGED = """
import msgpack
from stepgraph.checkpoint import DeserializationError, Serializer
inner = msgpack.ExtType(1, msgpack.packb([]))
for _ in range(5000):
    inner = msgpack.ExtType(1, msgpack.packb([inner]))
try:
    Serializer().loads(b"SG\\x01\\x00" + msgpack.packb(inner))
    print("loaded")
except DeserializationError:
    print("refused")
"""

_NESTED_DUMPED = """
from stepgraph.checkpoint import DeserializationError, SerializationError, Serializer
value = ()
for _ in range(300):
    value = (value,)
serde = Serializer()
try:
    blob = serde.dumps(value)
except SerializationError:
    print("refused")
else:
    try:
        print("loaded" if serde.loads(blob) == value else "changed")
    except DeserializationError:
        print("dumped but cannot be loaded")
"""


def _run_child(code: str) -> str:
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, (
        f"the child process died (exit code {child.returncode}): {child.stderr[-500:]}"
    )
    return child.stdout.strip()


def test_deeply_nested_forged_extensions_are_refused() -> None:
    assert _run_child(_NESTED_FORGED) == "refused"


def test_what_dumps_accepts_loads_without_crashing() -> None:
    assert _run_child(_NESTED_DUMPED) in ("refused", "loaded")


def test_msgpack_timestamp_extension_loads_as_a_datetime() -> None:
    # msgpack handles its own timestamp code (-1) before our hook; it is read as an
    # aware UTC datetime, a type of the format, and dumps again.
    ok, value = load(HEADER + b"\xd6\xff\x00\x00\x00\x01")
    assert ok
    assert value == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    assert Serializer(REGISTRY).loads(Serializer(REGISTRY).dumps(value)) == value


# -- encrypted data: any change is detected ----------------------------------------------------

KEY = bytes(range(32))


def _sealed(**kwargs: Any) -> Serializer:
    pytest.importorskip("cryptography")
    return Serializer(REGISTRY, cipher=AesGcmCipher(KEY), **kwargs)


@FUZZ
@given(values, st.data())
def test_tampered_ciphertext_is_refused(value: Any, data: st.DataObject) -> None:
    serde = _sealed()
    blob = bytearray(serde.dumps(value))
    at = data.draw(st.integers(0, len(blob) - 1), label="at")
    blob[at] ^= data.draw(st.integers(1, 255), label="mask")
    ok, _ = load(bytes(blob), serde)
    assert not ok
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    assert not load(serde.dumps(value)[:cut], serde)[0]


def test_every_flip_of_an_encrypted_example_is_refused() -> None:
    serde = _sealed()
    blob = serde.dumps(EXAMPLES[5])
    assert load(blob, serde) == (True, EXAMPLES[5])
    for at in range(len(blob)):
        damaged = bytearray(blob)
        damaged[at] ^= 0x01
        assert not load(bytes(damaged), serde)[0], f"flip at byte {at} went unnoticed"


def test_wrong_key_and_downgrade_are_refused() -> None:
    serde = _sealed()
    blob = serde.dumps({"secret": 42})
    other = Serializer(REGISTRY, cipher=AesGcmCipher(bytes(32)))
    assert not load(blob, other)[0]
    # clearing the "encrypted" flag: a strict reader refuses plain data outright ...
    downgraded = blob[:3] + b"\x00" + blob[4:]
    assert not load(downgraded, serde)[0]
    # ... and a migrating reader parses the ciphertext as plain data, and still fails closed
    load(downgraded, _sealed(allow_unencrypted=True))


@FUZZ
@given(st.binary(max_size=80))
def test_random_sealed_bodies_are_refused(body: bytes) -> None:
    assert not load(b"SG\x01\x01" + body, _sealed())[0]
