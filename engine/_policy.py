"""Retry and cache policies: what to do when a node fails, and when to skip running it.

``RetryPolicy`` says which errors are worth another attempt and how long to wait
before it; ``CachePolicy`` says how a node's input becomes a cache key and how long
a cached result stays valid. The runner (``_runner``) applies both; this module
holds the policy types and the pure decisions (which policy matches an error, how
long to sleep, which key and namespace a task has).

The waiting and the randomness go through the module-level hooks ``_sleep``,
``_asleep`` and ``_random``, so tests can replace them and never really wait.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import xxhash

from stepgraph.checkpoint import SerializationError, Serializer

from .errors import NodeTimeoutError

if TYPE_CHECKING:
    from ._program import NodeSpec

__all__ = ["CachePolicy", "RetryPolicy", "default_retry_on"]

RetryOn = type[BaseException] | Sequence[type[BaseException]] | Callable[[Exception], bool]
"""Which errors a policy retries: a class, a sequence of classes, or a predicate."""

# Hooks: replaced in tests so that backoff is observed instead of waited for.
_sleep: Callable[[float], None] = time.sleep
_asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
_random: Callable[[], float] = random.random

# Errors that mean "the code or its input is wrong": another attempt would fail the
# same way. OSError is here too, so a bare TimeoutError is not retried by default.
_NOT_TRANSIENT: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    ArithmeticError,
    ImportError,
    LookupError,
    NameError,
    SyntaxError,
    RuntimeError,
    ReferenceError,
    StopIteration,
    StopAsyncIteration,
    OSError,
)


def default_retry_on(exc: BaseException) -> bool:
    """Whether an error is worth retrying, when a policy does not say otherwise.

    Retried: ``ConnectionError``, ``NodeTimeoutError``, HTTP 5xx errors of httpx
    (``HTTPStatusError``) and requests (``HTTPError``; also one without a response),
    and any error not listed below. Not retried: ``ValueError``, ``TypeError``,
    ``ArithmeticError``, ``ImportError``, ``LookupError``, ``NameError``,
    ``SyntaxError``, ``RuntimeError``, ``ReferenceError``, ``StopIteration``,
    ``StopAsyncIteration``, ``OSError`` (so a plain ``TimeoutError``), HTTP 4xx errors,
    and control signals (anything that is not an ``Exception``).

    httpx and requests are only consulted if the program already imported them: an
    error of theirs cannot exist otherwise.
    """
    if not isinstance(exc, Exception):
        return False
    # Checked first: both are OSError or RuntimeError subclasses.
    if isinstance(exc, NodeTimeoutError | ConnectionError):
        return True
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        return _is_5xx(getattr(exc.response, "status_code", None))
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.HTTPError):
        response = getattr(exc, "response", None)
        return response is None or _is_5xx(getattr(response, "status_code", None))
    return not isinstance(exc, _NOT_TRANSIENT)


def _is_5xx(status: Any) -> bool:
    return isinstance(status, int) and 500 <= status < 600


class _RetryFields(NamedTuple):
    initial_interval: float = 0.5
    backoff_factor: float = 2.0
    max_interval: float = 128.0
    max_attempts: int = 3
    jitter: bool = True
    retry_on: RetryOn = default_retry_on


class RetryPolicy(_RetryFields):
    """How to retry a node whose attempt raised.

    Args:
        initial_interval: seconds to wait before the first retry.
        backoff_factor: each further wait is this many times the previous one.
        max_interval: the longest wait, in seconds (before jitter).
        max_attempts: attempts in total, the first one included; 1 never retries.
        jitter: add a random 0 to 1 s to every wait, so that many failing tasks do
            not all retry at the same instant.
        retry_on: which errors to retry: an exception class, a sequence of them, or
            a predicate taking the error; ``default_retry_on`` by default.

    The wait before retry ``k`` (``k`` failed attempts so far) is
    ``min(max_interval, initial_interval * backoff_factor ** (k - 1))``, plus the
    jitter. Control signals (interrupts, ``Command.PARENT``) are never retried.

    Example:
        >>> RetryPolicy(max_attempts=5, retry_on=ConnectionError).max_attempts
        5
    """

    __slots__ = ()

    def __new__(
        cls,
        initial_interval: float = 0.5,
        backoff_factor: float = 2.0,
        max_interval: float = 128.0,
        max_attempts: int = 3,
        jitter: bool = True,
        retry_on: RetryOn = default_retry_on,
    ) -> RetryPolicy:
        for name, value in (("initial_interval", initial_interval), ("max_interval", max_interval)):
            if not _number(value) or not value >= 0 or not math.isfinite(value):
                raise ValueError(
                    f"RetryPolicy {name} must be a number of seconds >= 0, got {value!r}"
                )
        if not _number(backoff_factor) or not 1 <= backoff_factor < math.inf:
            raise ValueError(
                f"RetryPolicy backoff_factor must be a number >= 1 (1 waits the same every "
                f"time), got {backoff_factor!r}"
            )
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise ValueError(
                f"RetryPolicy max_attempts must be an integer >= 1 (it counts the first "
                f"attempt too), got {max_attempts!r}"
            )
        if not isinstance(jitter, bool):
            raise TypeError(f"RetryPolicy jitter must be True or False, got {jitter!r}")
        _check_retry_on(retry_on)
        return super().__new__(
            cls, initial_interval, backoff_factor, max_interval, max_attempts, jitter, retry_on
        )

    def _replace(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed, checked like a new policy."""
        return type(self)(**{**self._asdict(), **changes})

    def retries(self, exc: BaseException) -> bool:
        """Whether this policy's ``retry_on`` accepts ``exc`` (attempts left aside)."""
        if not isinstance(exc, Exception):
            return False
        on = self.retry_on
        if isinstance(on, type):
            return isinstance(exc, on)
        if isinstance(on, Sequence):
            return isinstance(exc, tuple(on))
        return bool(on(exc))

    def interval(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts, jitter included."""
        try:
            wait = self.initial_interval * self.backoff_factor ** (failures - 1)
        except OverflowError:
            wait = math.inf
        wait = min(self.max_interval, wait)
        return wait + _random() if self.jitter else wait

    def __repr__(self) -> str:
        on = self.retry_on
        if isinstance(on, type):
            shown = on.__qualname__
        elif isinstance(on, Sequence):
            shown = "(" + ", ".join(c.__qualname__ for c in on) + ")"
        else:
            shown = getattr(on, "__qualname__", None) or repr(on)
        return (
            f"RetryPolicy(initial_interval={self.initial_interval!r}, "
            f"backoff_factor={self.backoff_factor!r}, max_interval={self.max_interval!r}, "
            f"max_attempts={self.max_attempts!r}, jitter={self.jitter!r}, retry_on={shown})"
        )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_error_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def _check_retry_on(on: Any) -> None:
    if _is_error_class(on):
        return
    if isinstance(on, Sequence) and not isinstance(on, str | bytes):
        bad = [c for c in on if not _is_error_class(c)]
        if not bad and on:
            return
        raise TypeError(
            "RetryPolicy retry_on must be an exception class, a non-empty sequence of "
            f"exception classes, or a predicate; got the sequence {on!r}"
        )
    if callable(on):
        return
    raise TypeError(
        "RetryPolicy retry_on must be an exception class, a sequence of exception classes "
        f"or a function taking the error and returning a bool; got {on!r}"
    )


def retry_policies(value: Any, what: str) -> tuple[RetryPolicy, ...] | str:
    """A node's or graph's ``retry_policy`` as a tuple, or the problem to report."""
    if value is None:
        return ()
    if isinstance(value, RetryPolicy):  # checked first: a policy is itself a tuple
        return (value,)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = tuple(value)
        if all(isinstance(p, RetryPolicy) for p in items):
            return items
    return (
        f"{what} must be a RetryPolicy or a sequence of RetryPolicy objects, got "
        f"{type(value).__name__} {value!r:.80}"
    )


def pick_policy(policies: Sequence[RetryPolicy], exc: BaseException) -> RetryPolicy | None:
    """The first policy whose ``retry_on`` accepts ``exc``; it alone decides."""
    for policy in policies:
        if policy.retries(exc):
            return policy
    return None


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Cache a node's writes, keyed by its input, so an equal input skips the node.

    Args:
        key_func: turns the node's input into the cache key (``str`` or ``bytes``).
            By default the input is serialized with the cache's ``Serializer`` (no
            pickle), so it must be data the serializer handles; pass ``key_func`` for
            anything else, or to ignore parts of the input.
        ttl: seconds a cached result stays valid; ``None`` keeps it until cleared.

    The cache itself is given to ``compile(cache=InMemoryCache())``.

    Example:
        >>> CachePolicy(ttl=60).ttl
        60
    """

    key_func: Callable[[Any], str | bytes] | None = None
    ttl: float | None = None

    def __post_init__(self) -> None:
        if self.key_func is not None and not callable(self.key_func):
            raise TypeError(
                f"CachePolicy key_func must be a function of the node's input returning str "
                f"or bytes, got {self.key_func!r}"
            )
        ttl = self.ttl
        if ttl is not None and (not _number(ttl) or not 0 < ttl < math.inf):
            raise ValueError(
                f"CachePolicy ttl must be a positive number of seconds or None (no expiry), "
                f"got {ttl!r}"
            )


def _canonical(value: Any, dumps: Callable[[Any], bytes], depth: int = 0) -> Any:
    """``value`` with sets in a fixed order and dicts sorted by key, for hashing.

    Set order follows string hashing, which changes from process to process, and
    dicts keep insertion order: two equal values must give the same bytes anywhere.
    """
    if depth > 32:
        return value
    kind = type(value)
    if kind is dict:
        items = [
            (_canonical(k, dumps, depth + 1), _canonical(v, dumps, depth + 1))
            for k, v in value.items()
        ]
        items.sort(key=lambda kv: dumps(kv[0]))
        return ["__dict__", items]
    if kind in (set, frozenset):
        members = sorted((_canonical(v, dumps, depth + 1) for v in value), key=dumps)
        return [f"__{kind.__name__}__", members]
    if kind in (list, tuple):
        return [kind.__name__, [_canonical(v, dumps, depth + 1) for v in value]]
    return value


def stable_bytes(value: Any, registry: Any = None, *, path: str = "input") -> bytes:
    """Bytes of ``value`` that equal values share in every process (never encrypted)."""
    serde = Serializer(registry) if registry is not None else Serializer()

    def dumps(v: Any) -> bytes:
        return serde.dumps(v, path=path)

    try:
        return dumps(_canonical(value, dumps))
    except SerializationError:
        dumps(value)  # the same error, with the path into the value as it was given
        raise


def cache_key(policy: CachePolicy, node: str, value: Any, serde: Serializer) -> str:
    """The key of a task's input: an xxh3-128 hex digest of ``key_func(value)``, or of
    the serialized input when the policy has no ``key_func``.

    Raises:
        SerializationError: no ``key_func`` and the input holds a value the serializer
            cannot handle (the error names the node and the value's path).
        TypeError: ``key_func`` returned something other than str or bytes.
    """
    func = policy.key_func
    if func is None:
        try:
            data = stable_bytes(value, serde.registry)
        except SerializationError as exc:
            raise SerializationError(
                f"cannot compute the cache key of node {node!r}: {exc.problem}",
                path=exc.path,
                type_name=exc.type_name,
                hint=(
                    "Give the node CachePolicy(key_func=...) that turns its input into a "
                    "str or bytes, or register the type with the cache's serializer."
                ),
            ) from None
        return xxhash.xxh3_128_hexdigest(data)
    key = func(value)
    if isinstance(key, str):
        return xxhash.xxh3_128_hexdigest(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, bytes | bytearray | memoryview):
        return xxhash.xxh3_128_hexdigest(bytes(key))
    raise TypeError(
        f"the cache key_func of node {node!r} returned {type(key).__name__} {key!r:.60}; "
        "it must return str or bytes"
    )


DYNAMIC = "__dynamic__"


def cache_namespace(node: NodeSpec) -> tuple[str, str]:
    """``(identity, node name)``: where a node's cache entries live.

    The identity is ``module.qualname`` of the node's function, so entries survive a
    restart of the program but not a rename of the function; nodes whose code has
    no stable name (subgraphs, callable objects without one) use ``"__dynamic__"``.
    """
    return (node_identity(node.proc), node.name)


def node_identity(proc: Any) -> str:
    target = proc
    for _ in range(8):  # injection wrappers and functools.partial keep the function as .func
        inner = getattr(target, "func", None)
        if inner is None or not callable(inner):
            break
        target = inner
    if inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target):
        module = getattr(target, "__module__", None)
        qualname = getattr(target, "__qualname__", None)
        if module and qualname:
            return f"{module}.{qualname}"
    return DYNAMIC


class NodePolicies(NamedTuple):
    """What ``policy_problems`` needs to know about one node."""

    name: str
    retry_policy: Any
    cache_policy: Any
    timeout: Any
    cancellable: bool  # async code (or a subgraph), which a timeout can cancel


def policy_problems(nodes: Sequence[NodePolicies], retry_policy: Any, cache: Any) -> list[str]:
    """Everything wrong with a graph's retry, cache and timeout settings."""
    from stepgraph.checkpoint import BaseCache

    problems: list[str] = []
    found = retry_policies(retry_policy, "compile(retry_policy=...)")
    if isinstance(found, str):
        problems.append(found)
    if cache is not None and not isinstance(cache, BaseCache):
        problems.append(
            f"cache must be a stepgraph.checkpoint.BaseCache such as InMemoryCache() or "
            f"SqliteCache(path), got {type(cache).__name__}"
        )
    cached = []
    for node in nodes:
        found = retry_policies(node.retry_policy, f"retry_policy of node {node.name!r}")
        if isinstance(found, str):
            problems.append(found)
        if node.cache_policy is not None:
            if isinstance(node.cache_policy, CachePolicy):
                cached.append(node.name)
            else:
                problems.append(
                    f"cache_policy of node {node.name!r} must be a CachePolicy, got "
                    f"{type(node.cache_policy).__name__}"
                )
        timeout = node.timeout
        if timeout is None:
            continue
        if not _number(timeout) or not 0 < timeout < math.inf:
            problems.append(
                f"timeout of node {node.name!r} must be a positive number of seconds, "
                f"got {timeout!r}"
            )
        elif not node.cancellable:
            problems.append(
                f"node {node.name!r} has timeout={timeout:g} but is a sync function: "
                "timeouts need async nodes, because a thread cannot be cancelled; make it "
                "an async def, or enforce the limit inside it (e.g. a client timeout)"
            )
    if cached and cache is None:
        names = ", ".join(repr(n) for n in cached)
        problems.append(
            f"node(s) {names} have a cache_policy but the graph has no cache to keep results "
            "in; pass one: compile(cache=InMemoryCache()) or SqliteCache(path)"
        )
    return problems
