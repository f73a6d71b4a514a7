"""``stepgraph threads | state | history | replay | fork | prune | draw``.

Commands that look at what a checkpointer holds, travel in a thread's history, and
draw graphs. ``threads``, ``history``, ``prune`` and ``state`` without TARGET read the
checkpointer alone (no graph code is imported); ``state TARGET``, ``replay``, ``fork``
and ``draw`` load the graph.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from stepgraph.checkpoint import BaseCheckpointSaver, CheckpointTuple
from stepgraph.engine import Pregel

from ._common import (
    CliError,
    ExitCode,
    attach_checkpointer,
    close_checkpointer,
    dumps,
    fail,
    load_target,
    one_line,
    open_checkpointer,
    parse_json_input,
    print_error,
    to_jsonable,
)

__all__ = ["register"]

# Wide when piped, so that ids in tables are never cut short.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)

# -- shared options -------------------------------------------------------------------

CheckpointerOpt = Annotated[
    str | None,
    typer.Option(
        "--checkpointer",
        metavar="URL",
        help="sqlite:///path/to.db or memory: (default: sqlite:///.stepgraph/stepgraph.db)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output (JSON)")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")]
ThreadOpt = Annotated[str, typer.Option("--thread", metavar="ID", help="the thread id")]
CheckpointOpt = Annotated[
    str, typer.Option("--checkpoint", metavar="ID", help="a checkpoint id (see `history`)")
]
TargetArg = Annotated[
    str, typer.Argument(metavar="TARGET", help="module:attribute or path/to/file.py:attribute")
]

_INTERNAL_PREFIXES = ("branch:", "__")
_TASKS = "__pregel_tasks"
_INTERRUPT = "__interrupt__"


@contextmanager
def _errors(debug: bool) -> Iterator[None]:
    """Turn failures into one short line and a distinct exit code."""
    try:
        yield
    except CliError as exc:
        fail(exc, debug=debug)
    except KeyboardInterrupt:
        print_error("cancelled", debug=debug)
        raise SystemExit(int(ExitCode.CANCELLED)) from None
    except (SystemExit, typer.Exit):
        raise
    except Exception as exc:
        print_error(one_line(exc), "run with --debug for the traceback", debug=debug)
        raise SystemExit(int(ExitCode.GRAPH_ERROR)) from None


@contextmanager
def _saver(url: str | None) -> Iterator[BaseCheckpointSaver]:
    """A checkpointer opened from `url` that can load the engine's own types."""
    saver = open_checkpointer(url)
    try:
        _register_engine_types(saver)
        yield saver
    finally:
        close_checkpointer(saver)


def _register_engine_types(saver: BaseCheckpointSaver) -> None:
    from stepgraph.engine._types import register_engine_types

    registry = getattr(getattr(saver, "serde", None), "registry", None)
    if registry is not None:
        register_engine_types(registry)


@contextmanager
def _graph(target: str, url: str | None) -> Iterator[tuple[Pregel, BaseCheckpointSaver]]:
    """The graph `target` names, with a checkpointer (its own, else one from `url`)."""
    graph = load_target(target)
    own = graph.checkpointer
    saver = attach_checkpointer(graph, url)
    try:
        yield graph, saver
    finally:
        if saver is not own:
            close_checkpointer(saver)


def _config(thread: str, checkpoint: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint:
        conf["checkpoint_id"] = checkpoint
    return {"configurable": conf}


def _no_thread(thread: str) -> CliError:
    return CliError(
        ExitCode.BAD_TARGET,
        f"thread {thread!r} has no checkpoints in this checkpointer",
        "list the threads with `stepgraph threads` (and pass the same --checkpointer)",
    )


def _no_checkpoint(thread: str, checkpoint: str) -> CliError:
    return CliError(
        ExitCode.BAD_TARGET,
        f"thread {thread!r} has no checkpoint {checkpoint!r}",
        f"list its checkpoints with `stepgraph history --thread {thread}`",
    )


def _require(
    saver: BaseCheckpointSaver, thread: str, checkpoint: str | None = None
) -> CheckpointTuple:
    found = saver.get_tuple(_config(thread, checkpoint))
    if found is None:
        if checkpoint and saver.get_tuple(_config(thread)) is not None:
            raise _no_checkpoint(thread, checkpoint)
        raise _no_thread(thread)
    return found


def _emit_json(value: Any) -> None:
    sys.stdout.write(dumps(value) + "\n")
    sys.stdout.flush()


def _pretty(value: Any) -> None:
    out.print_json(dumps(value), highlight=False)


def _checkpoint_id(config: Mapping[str, Any] | None) -> str | None:
    if not config:
        return None
    return (config.get("configurable") or {}).get("checkpoint_id")


def _interrupts(found: CheckpointTuple) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for task_id, channel, value in found.pending_writes or []:
        if channel != _INTERRUPT:
            continue
        for one in value if isinstance(value, list | tuple) else [value]:
            items.append(
                {
                    "id": getattr(one, "id", None),
                    "value": getattr(one, "value", one),
                    "task": task_id,
                }
            )
    return items


def _sends(found: CheckpointTuple) -> list[str]:
    sent = found.checkpoint["channel_values"].get(_TASKS) or []
    return [str(getattr(s, "node", s)) for s in sent if hasattr(s, "node")]


def _triggered(found: CheckpointTuple) -> list[str]:
    """The nodes a StateGraph would run after this checkpoint (read off its channels).

    The barrier that made the checkpoint wrote ``branch:to:NODE`` for each node it
    triggered (``__start__`` for new input); a queued ``Send`` names its node. Graphs
    built differently may show nothing: pass TARGET to `state` to be sure.
    """
    cp = found.checkpoint
    updated = cp.get("updated_channels") or []
    names: list[str] = []
    for channel in updated:
        if channel.startswith("branch:to:"):
            names.append(channel[len("branch:to:") :])
        elif channel == "__start__":
            names.append("__start__")
    for node in _sends(found):
        if node not in names:
            names.append(node)
    return names


def _ran(found: CheckpointTuple, parent: CheckpointTuple | None) -> list[str]:
    """The tasks whose writes made `found`: nodes whose seen versions moved, and Sends."""
    if parent is None:
        return []
    now = found.checkpoint["versions_seen"]
    before = parent.checkpoint["versions_seen"]
    names = [node for node, seen in now.items() if before.get(node) != seen]
    for node in _sends(parent):
        if node not in names:
            names.append(node)
    return names


def _user_values(channel_values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in channel_values.items() if not k.startswith(_INTERNAL_PREFIXES)}


# -- commands -----------------------------------------------------------------------------


def threads(
    checkpointer: CheckpointerOpt = None, json: JsonOpt = False, debug: DebugOpt = False
) -> None:
    """List the threads a checkpointer holds."""
    with _errors(debug), _saver(checkpointer) as saver:
        rows: dict[str, dict[str, Any]] = {}
        for found in saver.list(None):
            conf = found.config["configurable"]
            thread = str(conf["thread_id"])
            row = rows.setdefault(
                thread,
                {"thread": thread, "checkpoints": 0, "latest_step": None, "updated_at": None},
            )
            if conf.get("checkpoint_ns", ""):
                continue  # a subgraph's checkpoint: counted with the root's below
            row["checkpoints"] += 1
            if row["updated_at"] is None:  # newest first
                row["latest_step"] = found.metadata.get("step")
                row["updated_at"] = found.checkpoint["ts"]
                row["latest_checkpoint"] = found.checkpoint["id"]
        listing = sorted(rows.values(), key=lambda r: str(r["updated_at"] or ""), reverse=True)
        if json:
            _emit_json(listing)
            return
        if not listing:
            out.print("no threads saved in this checkpointer")
            return
        table = Table(Column("thread", no_wrap=True), "checkpoints", "latest step", "updated at")
        for row in listing:
            step = row["latest_step"]
            table.add_row(
                row["thread"],
                str(row["checkpoints"]),
                "" if step is None else str(step),
                str(row["updated_at"] or ""),
            )
        out.print(table)


def state(
    thread: ThreadOpt,
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="[TARGET]",
            help="the graph (module:attribute); without it, the raw saved channels",
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", metavar="ID", help="a checkpoint id (default: latest)"),
    ] = None,
    checkpointer: CheckpointerOpt = None,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a thread's state: values, what runs next, pending interrupts."""
    with _errors(debug):
        if target is None:
            with _saver(checkpointer) as saver:
                report = _raw_state(_require(saver, thread, checkpoint))
        else:
            with _graph(target, checkpointer) as (graph, saver):
                _require(saver, thread, checkpoint)
                report = _graph_state(graph, thread, checkpoint)
        if json:
            _emit_json(report)
            return
        _print_state(report)


def _raw_state(found: CheckpointTuple) -> dict[str, Any]:
    cp = found.checkpoint
    return {
        "thread": found.config["configurable"]["thread_id"],
        "checkpoint": cp["id"],
        "step": found.metadata.get("step"),
        "source": found.metadata.get("source"),
        "created_at": cp["ts"],
        "parent": _checkpoint_id(found.parent_config),
        "values": _user_values(cp["channel_values"]),
        "channels": dict(cp["channel_values"]),
        "next": _triggered(found),
        "next_inferred": True,
        "interrupts": _interrupts(found),
        "pending_writes": [
            {"task": task, "channel": channel, "value": value}
            for task, channel, value in found.pending_writes or []
        ],
    }


def _graph_state(graph: Pregel, thread: str, checkpoint: str | None) -> dict[str, Any]:
    try:
        snap = graph.get_state(_config(thread, checkpoint))
    except ValueError as exc:
        raise CliError(ExitCode.BAD_TARGET, one_line(exc)) from exc
    meta = snap.metadata or {}
    return {
        "thread": thread,
        "checkpoint": _checkpoint_id(snap.config),
        "step": meta.get("step"),
        "source": meta.get("source"),
        "created_at": snap.created_at,
        "parent": _checkpoint_id(snap.parent_config),
        "values": snap.values,
        "next": list(snap.next),
        "next_inferred": False,
        "interrupts": [
            {"id": getattr(i, "id", None), "value": getattr(i, "value", i)} for i in snap.interrupts
        ],
        "tasks": [
            {
                "id": t.id,
                "name": t.name,
                "error": None if t.error is None else one_line(t.error),
                "interrupts": len(t.interrupts),
            }
            for t in snap.tasks
        ],
    }


def _print_state(report: dict[str, Any]) -> None:
    out.print(
        f"thread [bold]{report['thread']}[/] checkpoint {report['checkpoint']} "
        f"(step {report['step']}, {report['source']}, {report['created_at']})"
    )
    out.print("[bold]values[/]")
    _pretty(report["values"])
    nxt = ", ".join(report["next"]) or "(nothing: the run is finished)"
    label = (
        "next (read off the channels; pass TARGET to be sure)"
        if report["next_inferred"]
        else "next"
    )
    out.print(f"[bold]{label}[/]: {nxt}")
    for task in report.get("tasks", []):
        if task["error"]:
            out.print(f"  task {task['name']} failed: {task['error']}")
    if report["interrupts"]:
        out.print(f"[bold]interrupts[/] ({len(report['interrupts'])}, waiting for an answer):")
        for item in report["interrupts"]:
            out.print(f"  id {item['id']}:")
            _pretty(item["value"])
    writes = [w for w in report.get("pending_writes", []) if w["channel"] != _INTERRUPT]
    if writes:
        out.print("[bold]pending writes[/] (of tasks that finished in the unfinished step):")
        for w in writes:
            out.print(f"  {w['task'][:12]} -> {w['channel']}: {dumps(w['value'])[:200]}")


def history(
    thread: ThreadOpt,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="the latest N checkpoints")
    ] = None,
    checkpointer: CheckpointerOpt = None,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """A table of a thread's checkpoints, oldest first: step, source, node, time, id."""
    with _errors(debug), _saver(checkpointer) as saver:
        # one more than asked for, so that the oldest shown knows which tasks made it
        found = list(saver.list(_config(thread), limit=None if limit is None else limit + 1))
        if not found:
            raise _no_thread(thread)
        by_id = {f.checkpoint["id"]: f for f in found}
        rows: list[dict[str, Any]] = []
        for item in found[:limit] if limit is not None else found:
            parent = by_id.get(_checkpoint_id(item.parent_config) or "")
            if parent is None and item.parent_config is not None:
                parent = saver.get_tuple(item.parent_config)  # a branch's older parent
            rows.append(
                {
                    "step": item.metadata.get("step"),
                    "source": item.metadata.get("source"),
                    "nodes": _ran(item, parent),
                    "time": item.checkpoint["ts"],
                    "id": item.checkpoint["id"],
                    "parent": _checkpoint_id(item.parent_config),
                    "next": _triggered(item),
                }
            )
        rows.reverse()
        if json:
            _emit_json(rows)
            return
        table = Table("step", "source", "node", "time", title=f"thread {thread}")
        table.add_column("id", no_wrap=True, min_width=36)
        for row in rows:
            step = row["step"]
            table.add_row(
                "" if step is None else str(step),
                str(row["source"] or ""),
                ", ".join(row["nodes"]),
                str(row["time"]),
                str(row["id"]),
            )
        out.print(table)


def replay(
    target: TargetArg,
    thread: ThreadOpt,
    checkpoint: CheckpointOpt,
    checkpointer: CheckpointerOpt = None,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run a thread again from one of its checkpoints (a new branch of its history)."""
    with _errors(debug), _graph(target, checkpointer) as (graph, saver):
        _require(saver, thread, checkpoint)
        try:
            result = graph.invoke(None, _config(thread, checkpoint))
        except CliError:
            raise
        except Exception as exc:
            raise CliError(
                ExitCode.GRAPH_ERROR,
                f"the replayed run failed: {one_line(exc)}",
                "run with --debug for the traceback",
            ) from exc
        latest = saver.get_tuple(_config(thread))
        latest_id = latest.checkpoint["id"] if latest else None
        interrupts: list[Any] = []
        if isinstance(result, dict) and _INTERRUPT in result:
            result = dict(result)
            interrupts = [
                {"id": getattr(i, "id", None), "value": getattr(i, "value", i)}
                for i in result.pop(_INTERRUPT)
            ]
        report = {
            "thread": thread,
            "from_checkpoint": checkpoint,
            "checkpoint": latest_id,
            "values": result,
            "interrupts": interrupts,
        }
        if json:
            _emit_json(to_jsonable(report))
        else:
            out.print(f"replayed thread [bold]{thread}[/] from checkpoint {checkpoint}")
            out.print("[bold]final state[/]")
            _pretty(result)
            out.print(f"latest checkpoint: {latest_id}")
            if interrupts:
                out.print(f"[bold]interrupted[/]: {len(interrupts)} question(s) waiting")
                for item in interrupts:
                    _pretty(item["value"])
                out.print(f"answer with: stepgraph run {target} --thread {thread} --resume JSON")
        if interrupts:
            raise SystemExit(int(ExitCode.INTERRUPTED))


def fork(
    target: TargetArg,
    thread: ThreadOpt,
    checkpoint: CheckpointOpt,
    values: Annotated[
        str,
        typer.Option("--values", metavar="JSON", help="the update, as JSON text or @file.json"),
    ],
    as_node: Annotated[
        str | None,
        typer.Option("--as-node", metavar="NODE", help="apply it as if NODE had returned it"),
    ] = None,
    checkpointer: CheckpointerOpt = None,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Branch a thread's history: a new checkpoint after CHECKPOINT with VALUES applied."""
    with _errors(debug):
        update = parse_json_input(values, what="--values")
        with _graph(target, checkpointer) as (graph, saver):
            _require(saver, thread, checkpoint)
            try:
                new = graph.update_state(_config(thread, checkpoint), update, as_node=as_node)
            except Exception as exc:
                raise CliError(
                    ExitCode.BAD_INPUT,
                    f"the update was refused: {one_line(exc)}",
                    "check --values against the graph's state keys and --as-node against its nodes",
                ) from exc
            new_id = _checkpoint_id(new)
            forked = saver.get_tuple(_config(thread, new_id)) if new_id else None
            nxt = _triggered(forked) if forked else []
        resume = f"stepgraph replay {target} --thread {thread} --checkpoint {new_id}"
        if json:
            _emit_json({"thread": thread, "parent": checkpoint, "checkpoint": new_id, "next": nxt})
            return
        out.print(f"forked thread [bold]{thread}[/] at {checkpoint}: new checkpoint {new_id}")
        if nxt:
            out.print(f"next: {', '.join(nxt)}")
        out.print(f"continue with: {resume}")


def prune(
    thread: Annotated[
        list[str],
        typer.Option("--thread", metavar="ID", help="a thread to prune (repeat for more)"),
    ],
    keep: Annotated[
        int, typer.Option("--keep", metavar="N", min=1, help="checkpoints to keep per thread")
    ] = 1,
    delete: Annotated[
        bool, typer.Option("--delete", help="delete the threads' checkpoints altogether")
    ] = False,
    checkpointer: CheckpointerOpt = None,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Keep only the latest N checkpoints of threads (or delete them with --delete)."""
    with _errors(debug), _saver(checkpointer) as saver:
        before = {t: _count(saver, t) for t in thread}
        missing = [t for t, n in before.items() if n == 0]
        if missing:
            raise _no_thread(missing[0])
        if delete:
            saver.prune(thread, strategy="delete")
        else:
            saver.prune(thread, strategy="keep_latest", keep=keep)
        report = [
            {
                "thread": t,
                "before": before[t],
                "after": (after := _count(saver, t)),
                "removed": before[t] - after,
            }
            for t in thread
        ]
        if json:
            _emit_json(report)
            return
        for row in report:
            out.print(
                f"thread {row['thread']}: removed {row['removed']} checkpoint(s), "
                f"{row['after']} left"
            )


def _count(saver: BaseCheckpointSaver, thread: str) -> int:
    return sum(1 for _ in saver.list({"configurable": {"thread_id": thread}}))


_DRAWERS = {"mermaid": "draw_mermaid", "ascii": "draw_ascii", "dot": "draw_dot"}


def draw(
    target: TargetArg,
    format: Annotated[
        str,
        typer.Option("--format", "-f", metavar="mermaid|ascii|dot", help="the drawing's format"),
    ] = "ascii",
    xray: Annotated[bool, typer.Option("--xray", help="expand subgraphs")] = False,
    checkpointer: CheckpointerOpt = None,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Draw a graph as Mermaid, ASCII art or Graphviz DOT."""
    with _errors(debug):
        if format not in _DRAWERS:
            raise CliError(
                ExitCode.BAD_INPUT,
                f"unknown --format {format!r}",
                "use one of: mermaid, ascii, dot",
            )
        graph = load_target(target)
        text = getattr(graph.get_graph(xray=xray), _DRAWERS[format])()
        if json:
            _emit_json({"format": format, "text": text})
            return
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def register(app: typer.Typer) -> None:
    """Add the inspection commands to `app`."""
    app.command("threads")(threads)
    app.command("state")(state)
    app.command("history")(history)
    app.command("replay")(replay)
    app.command("fork")(fork)
    app.command("prune")(prune)
    app.command("draw")(draw)
