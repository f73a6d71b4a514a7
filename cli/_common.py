"""Helpers shared by every ``stepgraph`` subcommand: targets, checkpointers, input, errors.

The API here is stable: `load_target`, `open_checkpointer`, `attach_checkpointer`,
`parse_json_input`, `ExitCode`, `CliError`, `fail`, `print_error`, `to_jsonable`,
`DEFAULT_CHECKPOINTER`.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import json
import sys
import traceback
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from stepgraph.checkpoint import BaseCheckpointSaver, InMemorySaver, SqliteSaver
from stepgraph.engine import Pregel

__all__ = [
    "DEFAULT_CHECKPOINTER",
    "ExitCode",
    "CliError",
    "fail",
    "print_error",
    "err_console",
    "load_target",
    "open_checkpointer",
    "attach_checkpointer",
    "close_checkpointer",
    "register_graph_types",
    "one_line",
    "parse_json_input",
    "to_jsonable",
    "dumps",
]

#: Where runs are saved when ``--checkpointer`` is not given (relative to the working directory).
DEFAULT_CHECKPOINTER = "sqlite:///.stepgraph/stepgraph.db"

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class ExitCode(enum.IntEnum):
    """The process exit codes of the ``stepgraph`` command."""

    OK = 0
    GRAPH_ERROR = 1  # the graph raised while running
    BAD_TARGET = 2  # TARGET cannot be loaded or is not a graph (or: unknown thread/checkpoint)
    BAD_INPUT = 3  # --input / --resume / a URL is not valid
    INTERRUPTED = 4  # the run paused waiting for a person, and no answer was given
    CANCELLED = 130  # Ctrl-C


class CliError(Exception):
    """A failure to report in one short line, with a hint about what to do."""

    def __init__(self, code: ExitCode, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def print_error(message: str, hint: str | None = None, *, debug: bool = False) -> None:
    """Print ``error: message`` and an optional hint to stderr; the traceback only if `debug`."""
    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    err_console.print(f"[bold red]error:[/] {_escape(message)}")
    if hint:
        err_console.print(f"[dim]hint:[/] {_escape(hint)}")


def fail(error: CliError, *, debug: bool = False) -> NoReturn:
    """Print `error` (see `print_error`) and exit with its code."""
    print_error(error.message, error.hint, debug=debug)
    raise SystemExit(int(error.code))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (the message alone is often ambiguous)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# -- targets ----------------------------------------------------------------------


def load_target(target: str) -> Pregel:
    """Load the graph that ``module:attr`` or ``path/to/file.py:attr`` names.

    The attribute may be dotted (``pkg.mod:holder.graph``). It must be a compiled graph or
    an ``@entrypoint`` (both are `stepgraph.engine.Pregel`).

    Raises:
        CliError: code BAD_TARGET, with the reason.
    """
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise CliError(
            ExitCode.BAD_TARGET,
            f"target {target!r} must look like 'module:attribute' or 'path/to/file.py:attribute'",
            "name the module (or .py file) and the graph variable, e.g. 'examples/essay.py:graph'",
        )
    module = _import_module(where, target)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = sorted(n for n in vars(module) if isinstance(vars(module)[n], Pregel))
            hint = f"graphs defined there: {', '.join(names)}" if names else None
            raise CliError(
                ExitCode.BAD_TARGET, f"{where!r} has no attribute {attr!r}", hint
            ) from None
    if not isinstance(obj, Pregel):
        compile_hint = None
        if hasattr(obj, "compile"):
            compile_hint = "it looks like a builder: name the result of .compile() instead"
        raise CliError(
            ExitCode.BAD_TARGET,
            f"{target!r} is a {type(obj).__name__}, not a compiled graph or an @entrypoint",
            compile_hint,
        )
    return obj


def _import_module(where: str, target: str) -> Any:
    is_path = where.endswith(".py") or "/" in where or "\\" in where
    if is_path:
        path = Path(where)
        if not path.is_file():
            raise CliError(
                ExitCode.BAD_TARGET,
                f"no such file: {where}",
                "give a path relative to the working directory",
            )
        name = "_stepgraph_target_" + path.stem.replace("-", "_")
        spec = importlib.util.spec_from_file_location(name, path.resolve())
        if spec is None or spec.loader is None:
            raise CliError(ExitCode.BAD_TARGET, f"cannot import {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # let the file import its neighbours, as `python file.py` would
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise CliError(
                ExitCode.BAD_TARGET,
                f"importing {where} failed: {one_line(exc)}",
                "run with --debug for the traceback",
            ) from exc
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # `module:attr` resolves from the working directory
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise CliError(
                ExitCode.BAD_TARGET,
                f"no module named {where!r}",
                "run from the folder that holds it, or give a path: 'path/to/file.py:graph'",
            ) from exc
        raise CliError(
            ExitCode.BAD_TARGET,
            f"importing {where} failed: {one_line(exc)}",
            "run with --debug for the traceback",
        ) from exc
    except Exception as exc:
        raise CliError(
            ExitCode.BAD_TARGET,
            f"importing {where} failed: {one_line(exc)}",
            "run with --debug for the traceback",
        ) from exc


# -- checkpointers ----------------------------------------------------------------


def open_checkpointer(url: str | None = None) -> BaseCheckpointSaver:
    """A saver for `url`: ``sqlite:///path`` (relative), ``sqlite:////abs/path``, ``memory:``.

    ``None`` means `DEFAULT_CHECKPOINTER`. The caller closes the saver (``close()`` when it
    has one).

    Raises:
        CliError: code BAD_INPUT for an unknown or malformed URL.
    """
    url = url or DEFAULT_CHECKPOINTER
    if url in ("memory:", "memory://", "memory"):
        return InMemorySaver()
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise CliError(
                ExitCode.BAD_INPUT,
                f"malformed SQLite URL {url!r}",
                "use sqlite:///relative/file.db or sqlite:////absolute/file.db",
            )
        path = rest[1:]
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            return SqliteSaver(Path(path).expanduser() if path != ":memory:" else path)
        except Exception as exc:
            raise CliError(ExitCode.BAD_INPUT, f"cannot open {url}: {one_line(exc)}", None) from exc
    if url.startswith(("postgres://", "postgresql://")):
        return _open_postgres(url)
    raise CliError(
        ExitCode.BAD_INPUT,
        f"unknown checkpointer URL {url!r}",
        "use sqlite:///path/to/file.db, postgresql://user@host/db or memory:",
    )


def _open_postgres(url: str) -> BaseCheckpointSaver:
    """A `PostgresSaver` for a libpq URL; ``?schema=NAME`` picks the PostgreSQL schema."""
    try:
        from stepgraph.checkpoint.postgres import PostgresSaver
    except ImportError as exc:
        raise CliError(ExitCode.BAD_INPUT, one_line(exc), None) from exc
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), "public")
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "schema"])
    conninfo = urllib.parse.urlunsplit(parts._replace(query=rest))
    try:
        return PostgresSaver(conninfo, schema=schema, timeout=10)
    except Exception as exc:
        raise CliError(
            ExitCode.BAD_INPUT,
            f"cannot open PostgreSQL checkpointer: {one_line(exc)}",
            "check the URL (postgresql://user:password@host:5432/dbname) and the server",
        ) from exc


def close_checkpointer(saver: object) -> None:
    """Close `saver` if it has a ``close`` method."""
    close = getattr(saver, "close", None)
    if callable(close):
        close()


def attach_checkpointer(graph: Pregel, url: str | None) -> BaseCheckpointSaver:
    """The graph's own saver, or (when it has none) one opened from `url` and attached to it.

    An attached saver learns the engine's types and, for a StateGraph, its schemas, so that
    saved state loads again.
    """
    own = graph.checkpointer
    if isinstance(own, BaseCheckpointSaver):
        return own
    saver = open_checkpointer(url)
    register_graph_types(graph, saver)
    graph.checkpointer = saver
    return saver


def register_graph_types(graph: Pregel, saver: BaseCheckpointSaver) -> None:
    """Allow `saver` to load the engine's types and the graph's own schemas."""
    from stepgraph.engine._types import register_engine_types

    registry = getattr(getattr(saver, "serde", None), "registry", None)
    if registry is None:
        return
    register_engine_types(registry)
    builder = getattr(graph, "builder", None)
    for schema in getattr(builder, "schemas", ()) or ():
        registry.register_schema(schema)
    context_schema = getattr(builder, "context_schema", None)
    if context_schema is not None:
        registry.register_schema(context_schema)


# -- input and output -------------------------------------------------------------


def parse_json_input(text: str, *, what: str = "--input") -> Any:
    """Parse JSON text, or the JSON file that ``@path`` names.

    Raises:
        CliError: code BAD_INPUT, naming the option, the line and the column.
    """
    source = "text"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(
                ExitCode.BAD_INPUT,
                f"{what}: cannot read {path}: {exc.strerror or exc}",
                "give @path/to/file.json relative to the working directory",
            ) from exc
        source = str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            ExitCode.BAD_INPUT,
            f"{what} is not valid JSON ({source}): {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            'quote strings inside the JSON: --input \'{"topic": "cats"}\' or \'"yes"\'',
        ) from exc


def to_jsonable(value: Any) -> Any:
    """`value` with everything JSON cannot hold turned into its ``repr``."""
    return json.loads(dumps(value))


def dumps(value: Any) -> str:
    """One line of JSON; values JSON cannot hold become their ``repr``."""
    return json.dumps(_prepare(value), default=repr, ensure_ascii=False)


def _prepare(value: Any) -> Any:
    # tuples and namedtuples stay lists; dataclasses / pydantic models become dicts
    if isinstance(value, dict):
        return {str(k): _prepare(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_prepare(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return _prepare(dump())
        except Exception:
            return repr(value)
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _prepare(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
