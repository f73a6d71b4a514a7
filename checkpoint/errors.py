"""The errors stepgraph.checkpoint raises, as one tree::

    SerdeError(ValueError)           a value could not be turned into bytes, or back
      SerializationError             dumping: a value of a type the registry does not know
      DeserializationError           loading: unknown type name, corrupt, truncated,
                                     tampered or undecryptable bytes
    ThreadBusyError(RuntimeError)    another run is advancing the same thread
      LeaseLostError                 ... and took it over from this one mid-run
    SchemaVersionError(RuntimeError) the database was written by a newer stepgraph

Every serde error carries the state path of the value (``state.items[3].payload``)
and, where one is known, the type's name, as fields as well as in the message.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SerdeError",
    "SerializationError",
    "DeserializationError",
    "ThreadBusyError",
    "LeaseLostError",
    "SchemaVersionError",
]


class SerdeError(ValueError):
    """A value could not be serialized or deserialized.

    Attributes:
        path: where the value sits, e.g. ``"state.items[3].payload"``.
        type_name: the type's registered or qualified name, or ``None`` when the
            problem is not about one type (for example a truncated blob).
        problem: what went wrong, in one sentence.
        hint: how to fix it, or ``None``.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str = "state",
        type_name: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = path
        self.type_name = type_name
        self.hint = hint
        message = f"{path}: {problem}"
        if hint:
            message += f" {hint}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"path": self.path, "type_name": self.type_name, "hint": self.hint}
        return (_rebuild, (type(self), self.problem, kwargs))


def _rebuild(cls: type[SerdeError], problem: str, kwargs: dict[str, Any]) -> SerdeError:
    return cls(problem, **kwargs)


class SerializationError(SerdeError):
    """A value cannot be dumped, usually because its type is not registered.

    The message names the path and the type and says how to register it.
    """


class DeserializationError(SerdeError):
    """Bytes cannot be loaded: an unregistered type name, or bad bytes.

    Loading fails closed: no partial value is returned, and a type name found in the
    data is only ever looked up in the registry, never imported.
    """


class ThreadBusyError(RuntimeError):
    """Another run holds the thread: two runs may not advance one thread at once.

    Attributes:
        thread_id: the thread.
        holder: who holds it (``host:pid:run``), as the saver recorded it.
        waited: seconds spent waiting for it before giving up.
    """

    def __init__(self, thread_id: str, holder: str | None, waited: float = 0.0) -> None:
        self.thread_id = thread_id
        self.holder = holder
        self.waited = waited
        who = f" (held by {holder})" if holder else ""
        after = f" after waiting {waited:.1f}s" if waited else ""
        super().__init__(
            f"thread {thread_id!r} is being advanced by another run{who}{after}; two runs "
            "cannot advance one thread at once. Wait for the other run to finish, pass "
            "config={'configurable': {'thread_id': ..., 'wait_for_thread': <seconds>}} to "
            "wait for it, or use another thread_id"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.thread_id, self.holder, self.waited))


class SchemaVersionError(RuntimeError):
    """A database was written by a newer stepgraph, with a schema this one predates.

    Attributes:
        path: the database.
        found: the schema version recorded in it.
        supported: the newest schema version this stepgraph knows.
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"{path} has stepgraph schema version {found}, but this stepgraph only knows "
            f"versions up to {supported}: a newer stepgraph wrote it. Upgrade stepgraph "
            "(pip install -U stepgraph) to open it; older code does not write to it, so "
            "it cannot damage data it does not understand"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.found, self.supported))


class LeaseLostError(ThreadBusyError):
    """A run's thread lease ran out and another run took the thread over.

    The write that found out was not stored: the thread's history stays the other
    run's. It happens when a worker stalls (a pause, a network partition) for longer
    than the lease lasts; the run that gets it should stop, and can be started again
    once the other run is done.

    Attributes:
        thread_id: the thread.
        holder: the lease's holder now (``None`` if nobody holds it).
    """

    def __init__(self, thread_id: str, holder: str | None) -> None:
        self.thread_id = thread_id
        self.holder = holder
        self.waited = 0.0
        who = f"; {holder} holds it now" if holder else ""
        RuntimeError.__init__(
            self,
            f"this run lost its lease on thread {thread_id!r}{who}, so its write was not "
            "saved and the thread's history is left as the other run made it. A worker "
            "that stalls longer than the lease (60 s, renewed while it runs) loses its "
            "thread; run it again once the other run has finished",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.thread_id, self.holder))
