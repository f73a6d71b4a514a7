"""Checkpoint metadata as JSON, for the SQL savers' filters and for people reading rows.

A saver stores metadata twice: serialized (the exact value, loaded by every read) and
as JSON text that SQL can look into (SQLite's ``json_extract``, PostgreSQL's
``jsonb``). The JSON is an approximation: a filter pushed into SQL may only ever keep
more rows than it should, never fewer, and every row is checked again in Python with
``==``, exactly as `InMemorySaver` checks it, so every saver agrees on every filter.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

INT64 = (-(2**63), 2**63)
"""Integers SQL compares exactly; larger ones stay out of SQL filters."""

PLAIN_KEY = re.compile(r'[^"\\\x00-\x1f]*')
"""Keys a JSON path can name without escapes."""

_JSON_DEPTH = 64  # metadata nested deeper is stored as text


def plain_text(text: str) -> bool:
    """Whether SQL compares ``text`` the way Python does (no NUL, valid UTF-8)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_ABSENT = object()


def matches(metadata: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    """The exact filter check: every key present and ``==`` to the filter's value."""
    return not any(metadata.get(k, _ABSENT) != v for k, v in filter.items())


def metadata_json(metadata: Mapping[str, Any]) -> str:
    """Metadata as JSON text: odd types become their ``str()``, NUL becomes ``\\x00``.

    Neither SQLite's JSON functions nor PostgreSQL's ``jsonb`` hold every value
    metadata can, so this is a readable approximation, never what a read returns.
    """
    return json.dumps(_jsonable(metadata, 0), ensure_ascii=False, allow_nan=False)


def json_number(value: Any) -> int | float | str:
    """A number as SQL should compare it with a filter value.

    Python compares numbers of different types by exact value (``Decimal(1) == 1``,
    ``Fraction(1, 2) == 0.5``, ``1.0 == True``), and so does SQL between an integer
    and a real. So integral values become integers, other real values the nearest
    float (which can only add matches, never lose one: an exact equality survives the
    conversion), and what JSON cannot hold becomes text, which no number equals.
    """
    if isinstance(value, float):  # float and its subclasses: already what SQL holds
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, numbers.Integral):
        number = int(value)
        return number if INT64[0] <= number < INT64[1] else str(number)
    try:
        if getattr(value, "imag", 0) != 0:
            return str(value)
        real = getattr(value, "real", value)  # Decimal, Fraction, complex with no imag
        if math.isfinite(float(real)) and int(real) == real:
            return json_number(int(real))
        real_float = float(real)
    except (ArithmeticError, TypeError, ValueError):
        return str(value)
    return real_float if math.isfinite(real_float) else str(value)


def _text(value: str) -> str:
    if plain_text(value):
        return value
    # NUL fits neither SQL's text nor jsonb; lone surrogates are not UTF-8.
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()


def _jsonable(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, numbers.Number):
        return json_number(value)
    if depth >= _JSON_DEPTH:
        return _jsonable(str(value), depth)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: isinstance(kv[0], str))  # str keys win
        return {_jsonable(str(k), depth): _jsonable(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    return _jsonable(str(value), depth)
