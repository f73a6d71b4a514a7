"""Optional encryption of serialized values with AES-GCM.

Needs the ``cryptography`` package (``pip install 'stepgraph[crypto]'``), imported only
when an `AesGcmCipher` is created.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["AesGcmCipher"]

_NONCE_LEN = 12  # 96 bits, the size GCM is designed for
_TAG_LEN = 16


class AesGcmCipher:
    """AES-GCM authenticated encryption for `Serializer` (``cipher=``).

    Each value gets a fresh random 96-bit nonce; the output is nonce + ciphertext +
    16-byte tag. The serializer passes its header as associated data, so neither the
    body nor the header can be altered without decryption failing. Random nonces are
    safe for up to about 2**32 values per key; rotate keys well before that.

    Args:
        key: 16, 24 or 32 bytes (AES-128, -192 or -256). Make one with
            `AesGcmCipher.generate_key`, and keep it out of the store it protects.

    Raises:
        TypeError: ``key`` is not bytes.
        ValueError: ``key`` has the wrong length.
        ImportError: the ``cryptography`` package is not installed.

    Example:
        >>> from stepgraph.checkpoint import Serializer
        >>> serde = Serializer(cipher=AesGcmCipher(AesGcmCipher.generate_key()))
        >>> serde.loads(serde.dumps({"secret": 42}))
        {'secret': 42}
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray):
            raise TypeError(f"the key must be bytes, got {type(key).__name__}")
        if len(key) not in (16, 24, 32):
            raise ValueError(f"an AES key is 16, 24 or 32 bytes long, not {len(key)}")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ImportError(
                "AesGcmCipher needs the 'cryptography' package: pip install 'stepgraph[crypto]'"
            ) from exc
        self._aead: Any = AESGCM(bytes(key))

    @staticmethod
    def generate_key(bits: int = 256) -> bytes:
        """A new random key of ``bits`` (128, 192 or 256) bits."""
        if bits not in (128, 192, 256):
            raise ValueError(f"bits must be 128, 192 or 256, not {bits}")
        return os.urandom(bits // 8)

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext``, binding ``associated_data`` to it."""
        nonce = os.urandom(_NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        """Decrypt output of `encrypt`.

        Raises:
            ValueError: the data is too short to hold a nonce and a tag.
            cryptography.exceptions.InvalidTag: wrong key, or altered data.
        """
        if len(ciphertext) < _NONCE_LEN + _TAG_LEN:
            raise ValueError("the encrypted data is too short")
        nonce = ciphertext[:_NONCE_LEN]
        return bytes(self._aead.decrypt(nonce, ciphertext[_NONCE_LEN:], associated_data))

    def __repr__(self) -> str:
        return "AesGcmCipher(key=<hidden>)"
