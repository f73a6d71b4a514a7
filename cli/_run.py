"""``stepgraph run``: run a graph with a live display, answer its interrupts, resume it."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.pretty import Pretty
from rich.table import Table

from stepgraph.engine import Command, Interrupt, Pregel
from stepgraph.engine.errors import EmptyInputError, InvalidInputError

from ._common import (
    DEFAULT_CHECKPOINTER,
    CliError,
    ExitCode,
    attach_checkpointer,
    close_checkpointer,
    dumps,
    err_console,
    fail,
    load_target,
    one_line,
    parse_json_input,
)

__all__ = ["register", "run"]

# The modes the display itself needs: "debug" carries the superstep of each task event.
_DISPLAY_MODES = ("debug", "updates")
_STREAM_MODES = ("values", "updates", "custom", "tasks", "debug", "checkpoints")


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to `app`."""
    app.command("run", no_args_is_help=True)(run)


def run(
    target: Annotated[
        str, typer.Argument(help="The graph: 'module:attr' or 'path/to/file.py:attr'.")
    ],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Input as JSON text or @file.json.")
    ] = None,
    thread: Annotated[
        str | None,
        typer.Option("--thread", "-t", help="Thread id (default: a new one, printed)."),
    ] = None,
    checkpointer: Annotated[
        str,
        typer.Option(help="Where runs are saved: sqlite:///path, sqlite:////abs/path, memory:."),
    ] = DEFAULT_CHECKPOINTER,
    stream: Annotated[
        list[str] | None,
        typer.Option(
            "--stream", "-s", help=f"Also show these stream modes: {', '.join(_STREAM_MODES)}."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON event per line instead.")
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(help="Answer the (first) interrupt with this JSON instead of asking."),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Run TARGET; answer its interrupts; Ctrl-C leaves a run you can resume."""
    opts = _Options(target, thread, checkpointer, tuple(stream or ()), json_out, debug)
    try:
        code = _run(opts, input, resume)
    except CliError as exc:
        if json_out:
            print(dumps({"event": "error", "code": int(exc.code), "message": exc.message}))
        fail(exc, debug=debug)
    raise typer.Exit(int(code))


@dataclass
class _Options:
    target: str
    thread: str | None
    checkpointer: str
    modes: tuple[str, ...]
    json: bool
    debug: bool

    def command(self, thread: str, resume: str | None = None) -> str:
        """The command line that continues `thread`."""
        parts = ["stepgraph", "run", self.target, "--thread", thread]
        if self.checkpointer != DEFAULT_CHECKPOINTER:
            parts += ["--checkpointer", self.checkpointer]
        if resume is not None:
            parts += ["--resume", resume]
        return shlex.join(parts)


def _run(opts: _Options, input_text: str | None, resume_text: str | None) -> ExitCode:
    for mode in opts.modes:
        if mode not in _STREAM_MODES:
            raise CliError(
                ExitCode.BAD_INPUT,
                f"unknown stream mode {mode!r}",
                f"choose from {', '.join(_STREAM_MODES)}",
            )
    value = parse_json_input(input_text) if input_text is not None else None
    answer = parse_json_input(resume_text, what="--resume") if resume_text is not None else None
    graph = load_target(opts.target)
    saver = attach_checkpointer(graph, opts.checkpointer)
    try:
        return _drive(graph, opts, input_text is not None, value, resume_text is not None, answer)
    finally:
        close_checkpointer(saver)


def _drive(
    graph: Pregel, opts: _Options, has_input: bool, value: Any, has_answer: bool, answer: Any
) -> ExitCode:
    thread = opts.thread or uuid.uuid4().hex
    config: dict[str, Any] = {"configurable": {"thread_id": thread}}
    out = _Display(opts.json, opts.modes)
    out.start(thread, opts.thread is None)
    payload: Any = value
    if not has_input:
        pending = _pending(graph, config) if opts.thread else None
        if pending is None:
            raise CliError(
                ExitCode.BAD_INPUT,
                "nothing to run: give --input for a new run"
                + (f" (thread {thread!r} has nothing left to do)" if opts.thread else ""),
                'stepgraph run TARGET --input \'{"key": "value"}\'',
            )
        if pending:  # paused at interrupts: answer them before anything runs
            out.interrupts(pending)
            payload = _answer(pending, opts, thread, out, has_answer, answer)
            if payload is None:
                return ExitCode.INTERRUPTED
            has_answer = False
    while True:
        try:
            with _StopAtBarrier(out) as stop:
                interrupts = out.follow(graph.stream(payload, config, stream_mode=out.modes), stop)
            if stop.stopped:
                out.cancelled(opts.command(thread))
                return ExitCode.CANCELLED
        except KeyboardInterrupt:
            out.cancelled(opts.command(thread))
            return ExitCode.CANCELLED
        except (InvalidInputError, EmptyInputError) as exc:
            raise CliError(ExitCode.BAD_INPUT, one_line(exc), "check --input / --resume") from exc
        except Exception as exc:
            out.error(exc)
            if opts.debug:
                raise
            raise CliError(
                ExitCode.GRAPH_ERROR,
                one_line(exc),
                f"fix it and continue with: {opts.command(thread)}  (--debug shows the traceback)",
            ) from exc
        if not interrupts:
            break
        out.interrupts(interrupts)
        payload = _answer(interrupts, opts, thread, out, has_answer, answer)
        has_answer = False
        if payload is None:
            return ExitCode.INTERRUPTED
    state = graph.get_state(config)
    out.done(thread, state.values)
    return ExitCode.OK


def _pending(graph: Pregel, config: dict[str, Any]) -> list[Interrupt] | None:
    """The interrupts the thread waits for; [] when it can continue; None: nothing to do."""
    state = graph.get_state(config)
    if state.interrupts:
        return list(state.interrupts)
    return [] if state.next else None


def _answer(
    interrupts: list[Interrupt],
    opts: _Options,
    thread: str,
    out: _Display,
    has_answer: bool,
    answer: Any,
) -> Command | None:
    """The resume command for `interrupts`, or None when nobody can answer."""
    if has_answer:
        if len(interrupts) == 1:
            return Command(resume=answer)
        return Command(resume={interrupts[0].id: answer})
    if not sys.stdin.isatty():
        out.paused(opts.command(thread, "<json>"))
        return None
    answers = {i.id: _prompt(i, len(interrupts) > 1) for i in interrupts}
    if len(interrupts) == 1:
        return Command(resume=answers[interrupts[0].id])
    return Command(resume=answers)


def _prompt(interrupt: Interrupt, several: bool) -> Any:
    label = f"answer for {interrupt.id[:8]} (JSON)" if several else "answer (JSON)"
    while True:
        text = err_console.input(f"[bold]{label}[/]: ")
        try:
            return parse_json_input(text, what="the answer")
        except CliError as exc:
            err_console.print(f'[red]{escape(exc.message)}[/] - try again, e.g. "yes" or 42')


class _StopAtBarrier:
    """Ctrl-C while a run streams: the first asks to stop at the next barrier, the
    second stops at once (as a plain KeyboardInterrupt)."""

    def __init__(self, out: _Display) -> None:
        self.out = out
        self.requested = False
        self.stopped = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.out.console.print(
            "[yellow]stopping after this superstep[/] (Ctrl-C again to stop now)"
        )

    def __enter__(self) -> _StopAtBarrier:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _is_barrier(mode: str, chunk: Any) -> bool:
    """A chunk that comes right after a barrier was applied and saved."""
    return mode == "debug" and isinstance(chunk, dict) and chunk.get("type") == "checkpoint"


# -- display ----------------------------------------------------------------------


@dataclass
class _Task:
    name: str
    step: int
    started: float
    ended: float | None = None
    status: str = "running"  # running | done | error | retry | interrupted
    note: str = ""

    def duration(self) -> float:
        return (self.ended or time.monotonic()) - self.started


@dataclass
class _Display:
    """Turns stream chunks into a live view (stderr) or JSON lines (stdout)."""

    json: bool
    extra: tuple[str, ...]
    step: int | None = None
    tasks: dict[str, _Task] = field(default_factory=dict)
    console: Console = field(default_factory=lambda: err_console)

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys((*_DISPLAY_MODES, *self.extra)))

    def _emit(self, event: str, **data: Any) -> None:
        print(dumps({"event": event, **data}), flush=True)

    def start(self, thread: str, new: bool) -> None:
        if self.json:
            self._emit("start", thread_id=thread)
        elif new:
            self.console.print(f"thread [bold]{thread}[/] (resume with --thread {thread})")
        else:
            self.console.print(f"thread [bold]{thread}[/]")

    def follow(self, chunks: Iterator[Any], stop: _StopAtBarrier | None = None) -> list[Interrupt]:
        """Consume a run's stream; the interrupts it ended with.

        With ``stop`` requested (a first Ctrl-C), it leaves the stream at the next
        barrier: the superstep that was running finishes and is saved.
        """
        interrupts: list[Interrupt] = []
        live = None
        if not self.json and self.console.is_terminal:
            live = Live(self._view(), console=self.console, refresh_per_second=8, transient=False)
            live.start()
        try:
            try:
                for mode, chunk in chunks:
                    if mode == "updates" and "__interrupt__" in chunk:
                        interrupts.extend(chunk["__interrupt__"])
                    else:
                        self._chunk(mode, chunk, live is None)
                    if live is not None:
                        live.update(self._view())
                    if stop is not None and stop.requested and _is_barrier(mode, chunk):
                        stop.stopped = True
                        break
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        finally:
            if live is not None:
                live.update(self._view())
                live.stop()
        return interrupts

    def _chunk(self, mode: str, chunk: Any, plain: bool) -> None:
        if mode == "debug":
            self._debug(chunk, plain)
        elif mode == "updates" and self.json:
            self._emit("update", step=self.step, updates=chunk)
        if mode in self.extra and not (mode in _DISPLAY_MODES and mode != "debug"):
            if self.json:
                self._emit("stream", mode=mode, chunk=chunk)
            else:
                self.console.print(f"[dim]{mode}:[/]", Pretty(chunk))
        elif mode == "updates" and "updates" in self.extra and not self.json:
            self.console.print("[dim]updates:[/]", Pretty(chunk))

    def _debug(self, event: dict[str, Any], plain: bool) -> None:
        kind, payload, step = event["type"], event["payload"], event["step"]
        if kind == "checkpoint":
            return
        if step != self.step:
            self.step = step
            if plain and not self.json:
                self.console.print(f"[bold]step {step}[/]")
        tid, name = payload["id"], payload["name"]
        if kind == "task":
            self.tasks[tid] = _Task(name, step, time.monotonic())
            if self.json:
                self._emit("task_start", step=step, id=tid, name=name)
            return
        task = self.tasks.setdefault(tid, _Task(name, step, time.monotonic()))
        if kind == "task_retry":
            task.status, task.note = (
                "retry",
                f"attempt {payload['attempt']} failed: "
                + one_line(payload["error"])
                + f"; retrying in {payload['retry_in']:.2f}s",
            )
            if self.json:
                self._emit(
                    "retry",
                    step=step,
                    id=tid,
                    name=name,
                    attempt=payload["attempt"],
                    retry_in=payload["retry_in"],
                    error=one_line(payload["error"]),
                )
            elif plain:
                self.console.print(f"  [yellow]↻ {escape(name)}[/] {escape(task.note)}")
            return
        task.ended = time.monotonic()
        error, asked = payload["error"], payload["interrupts"]
        if error is not None:
            task.status, task.note = "error", one_line(error)
        elif asked:
            task.status, task.note = "interrupted", f"{len(asked)} question(s)"
        else:
            task.status, task.note = "done", ""
        if self.json:
            self._emit(
                "task_end",
                step=step,
                id=tid,
                name=name,
                status=task.status,
                duration=round(task.duration(), 6),
                error=task.note if error is not None else None,
            )
        elif plain:
            self.console.print(self._line(task))

    def _line(self, task: _Task) -> str:
        mark = {
            "running": "[cyan]…[/]",
            "retry": "[yellow]↻[/]",
            "done": "[green]✓[/]",
            "error": "[red]✗[/]",
            "interrupted": "[magenta]?[/]",
        }[task.status]
        note = f"  {escape(task.note)}" if task.note else ""
        return f"  {mark} {escape(task.name)} [dim]{task.duration():.2f}s[/]{note}"

    def _view(self) -> Group:
        table = Table.grid(padding=(0, 1))
        table.add_column()
        for task in list(self.tasks.values())[-20:]:
            table.add_row(self._line(task))
        return Group(f"[bold]step {self.step if self.step is not None else '-'}[/]", table)

    def interrupts(self, interrupts: list[Interrupt]) -> None:
        for i in interrupts:
            if self.json:
                self._emit("interrupt", id=i.id, value=i.value)
            else:
                self.console.print(f"[bold magenta]interrupt[/] [dim]{i.id}[/]")
                self.console.print(Pretty(i.value))

    def paused(self, command: str) -> None:
        if self.json:
            self._emit("paused", resume_command=command)
        self.console.print("the run is waiting for an answer; resume it with:")
        self.console.print(f"  {escape(command)}", soft_wrap=True)

    def cancelled(self, command: str) -> None:
        if self.json:
            self._emit("cancelled", resume_command=command)
        self.console.print("[yellow]stopped[/]: the last finished step is saved; continue with:")
        self.console.print(f"  {escape(command)}", soft_wrap=True)

    def error(self, exc: BaseException) -> None:
        if self.json:
            self._emit("error", code=int(ExitCode.GRAPH_ERROR), message=one_line(exc))

    def done(self, thread: str, values: Any) -> None:
        if self.json:
            self._emit("done", thread_id=thread, values=values)
        else:
            Console(soft_wrap=True).print(Pretty(values))
