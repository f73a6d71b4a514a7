"""stepgraph.checkpoint: checkpoint data model, serialization and savers.

Serialization (`Serializer`) is msgpack with an explicit `TypeRegistry` of extension
types: nothing a run saves can execute code when it is loaded, and a type name the
registry does not know fails closed with `DeserializationError`.
"""

from ._crypto import AesGcmCipher
from ._serde import Cipher, Serializer
from ._serde_registry import StoredError, TypeRegistry, default_registry
from .errors import DeserializationError, SerdeError, SerializationError

__all__ = [
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
]

# Show the public path in reprs and tracebacks instead of the private module.
for _exported in (Serializer, TypeRegistry, StoredError, Cipher, AesGcmCipher):
    _exported.__module__ = __name__
del _exported
