"""From a state schema (TypedDict, dataclass or pydantic model) to channels.

Each annotated key becomes one channel:

* ``Annotated[T, reducer]`` with a two-argument callable: ``BinaryOperatorAggregate``;
* ``Annotated[T, SomeChannel(...)]`` or ``Annotated[T, SomeChannelClass]``: that channel;
* ``Annotated[T, RemainingSteps]`` / ``IsLastStep``: a managed value (not a channel);
* anything else: ``LastValue(T)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, NotRequired, Required, TypeGuard, get_origin, get_type_hints

from pydantic import BaseModel, ValidationError

from stepgraph.channels import MISSING, BaseChannel, BinaryOperatorAggregate, LastValue

from ._managed import manager_of
from .errors import InvalidNodeReturnError


def is_pydantic(schema: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def is_schema(schema: Any) -> bool:
    """True for classes whose annotations name state keys."""
    if not isinstance(schema, type):
        return False
    if is_pydantic(schema) or dataclasses.is_dataclass(schema):
        return True
    return typing.is_typeddict(schema)


class Schema:
    """The channels, managed values and mapper that one schema class declares."""

    def __init__(self, schema: type) -> None:
        self.schema = schema
        self.name = getattr(schema, "__name__", repr(schema))
        self.channels: dict[str, BaseChannel[Any, Any, Any]] = {}
        self.managed: dict[str, type] = {}
        self.problems: list[str] = []
        for key, ann in self._annotations().items():
            self._add(key, ann)
        self.keys: tuple[str, ...] = tuple(self.channels)
        self.all_keys: tuple[str, ...] = (*self.channels, *self.managed)

    def _annotations(self) -> dict[str, Any]:
        schema = self.schema
        try:
            hints = get_type_hints(schema, include_extras=True)
        except Exception as exc:  # unresolvable forward references
            self.problems.append(f"cannot read the annotations of {self.name}: {exc}")
            return {}
        if is_pydantic(schema):
            return {k: hints.get(k, f.annotation) for k, f in schema.model_fields.items()}
        if dataclasses.is_dataclass(schema):
            return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(schema)}
        return hints

    def _add(self, key: str, ann: Any) -> None:
        while get_origin(ann) in (Required, NotRequired):
            ann = typing.get_args(ann)[0]
        if get_origin(ann) is not Annotated:
            self.channels[key] = LastValue(ann, key)
            return
        base, metas = ann.__origin__, ann.__metadata__
        for meta in reversed(metas):
            manager = manager_of(meta)
            if manager is not None:
                self.managed[key] = manager
                return
            if isinstance(meta, BaseChannel):
                ch = meta.from_checkpoint(MISSING)
                ch.key = key
                self.channels[key] = ch
                return
            if isinstance(meta, type) and issubclass(meta, BaseChannel):
                self.channels[key] = meta(base, key)
                return
            if callable(meta) and not isinstance(meta, type):
                if _two_positional(meta):
                    self.channels[key] = BinaryOperatorAggregate(base, meta, key=key)
                else:
                    self.problems.append(
                        f"invalid reducer for {self.name}.{key}: {_name(meta)} must take exactly "
                        "two positional arguments (the current value and the update), like "
                        "operator.add"
                    )
                    self.channels[key] = LastValue(base, key)
                return
        self.channels[key] = LastValue(base, key)

    # -- instances ----------------------------------------------------------------

    def mapper(self) -> Callable[[Any], Any] | None:
        """Builds the schema's instance from a dict of values (None for TypedDicts)."""
        schema = self.schema
        if is_pydantic(schema):
            # Values were validated when written, so skip re-validating the whole
            # state on every read; defaults fill the keys nobody wrote yet.
            construct = schema.model_construct
            return lambda values: construct(**values) if isinstance(values, dict) else values
        if dataclasses.is_dataclass(schema):
            return lambda values: schema(**values) if isinstance(values, dict) else values
        return None

    def updates_from(self, value: Any) -> list[tuple[str, Any]] | None:
        """``(key, value)`` pairs from a returned schema instance, or None if not one."""
        if isinstance(value, BaseModel):
            return [(k, getattr(value, k)) for k in value.model_fields_set if k in self.channels]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
        return None


def _two_positional(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True  # builtins without a signature: trust the user
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) == 2 or (
        len(positional) < 2 and any(p.kind == p.VAR_POSITIONAL for p in params)
    )


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


class PydanticValidator:
    """Validates the updates of one pydantic state model, one key at a time."""

    def __init__(self, model: type[BaseModel], validated_keys: set[str]) -> None:
        self.model = model
        self.keys = validated_keys

    def __call__(self, node: str, step: int, key: str, value: Any) -> Any:
        if key not in self.keys:
            return value
        try:
            inst = self.model.model_construct()
            self.model.__pydantic_validator__.validate_assignment(inst, key, value)
        except ValidationError as exc:
            details = "; ".join(e["msg"] for e in exc.errors())
            raise InvalidNodeReturnError(
                f"node {node!r} wrote an invalid value for {self.model.__name__}.{key} in "
                f"superstep {step}: {details} (got {value!r})",
                node=node,
                step=step,
            ) from exc
        return getattr(inst, key)


def merge_channels(
    schemas: Mapping[type, Schema],
) -> tuple[dict[str, BaseChannel[Any, Any, Any]], dict[str, type], list[str]]:
    """Merge the channels of several schemas into one table, reporting conflicts."""
    channels: dict[str, BaseChannel[Any, Any, Any]] = {}
    managed: dict[str, type] = {}
    problems: list[str] = []
    for schema in schemas.values():
        problems += schema.problems
        for key, ch in schema.channels.items():
            have = channels.get(key)
            if have is None:
                channels[key] = ch
            elif have != ch and not (isinstance(ch, LastValue) or isinstance(have, LastValue)):
                problems.append(
                    f"state key {key!r} is declared with different channels in "
                    f"different schemas ({have!r} vs {ch!r}); declare it the same way everywhere"
                )
            elif isinstance(have, LastValue) and not isinstance(ch, LastValue):
                channels[key] = ch
        managed.update(schema.managed)
    return channels, managed, problems
