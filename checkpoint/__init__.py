"""stepgraph.checkpoint: checkpoint data model, serialization and savers.

Serialization (`Serializer`) is msgpack with an explicit `TypeRegistry` of extension
types: nothing a run saves can execute code when it is loaded, and a type name the
registry does not know fails closed with `DeserializationError`.
"""

from ._base import BaseCheckpointSaver, PruneStrategy, ThreadLease
from ._cache import BaseCache, InMemoryCache, SqliteCache
from ._crypto import AesGcmCipher
from ._memory import InMemorySaver
from ._model import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    empty_checkpoint,
)
from ._serde import Cipher, Serializer
from ._serde_registry import StoredError, TypeRegistry, default_registry
from ._sqlite import SqliteSaver
from ._stored import PreparedPut, StoredSaver
from .errors import (
    DeserializationError,
    LeaseLostError,
    SchemaVersionError,
    SerdeError,
    SerializationError,
    ThreadBusyError,
)

MemorySaver = InMemorySaver

__all__ = [
    # data model
    "Checkpoint",
    "CheckpointMetadata",
    "CheckpointTuple",
    "PendingWrite",
    "FORMAT_VERSION",
    "empty_checkpoint",
    # savers
    "BaseCheckpointSaver",
    "StoredSaver",
    "PreparedPut",
    "ThreadLease",
    "PruneStrategy",
    "InMemorySaver",
    "MemorySaver",
    "SqliteSaver",
    # caches
    "BaseCache",
    "InMemoryCache",
    "SqliteCache",
    # serialization
    "Serializer",
    "TypeRegistry",
    "default_registry",
    "StoredError",
    "Cipher",
    "AesGcmCipher",
    # errors
    "SerdeError",
    "SerializationError",
    "DeserializationError",
    "ThreadBusyError",
    "LeaseLostError",
    "SchemaVersionError",
]

# Show the public path in reprs and tracebacks instead of the private module.
for _exported in (
    Serializer,
    TypeRegistry,
    StoredError,
    Cipher,
    AesGcmCipher,
    BaseCheckpointSaver,
    StoredSaver,
    PreparedPut,
    ThreadLease,
    InMemorySaver,
    SqliteSaver,
    BaseCache,
    InMemoryCache,
    SqliteCache,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
):
    _exported.__module__ = __name__
del _exported
