"""The API key format, shared by the write path (issuing) and the hot path (checking).

A key is `gwk_` + 8 public characters + 40 secret characters. The first 12 characters
are the prefix stored in clear and used for lookup; the whole key is stored only as a
SHA-256 digest. Keys carry 240 bits of randomness, so a fast hash is enough: there is
nothing to brute-force that a slow KDF would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_MARK = "gwk_"
PREFIX_LENGTH = len(KEY_MARK) + 8
SECRET_LENGTH = 40
_ALPHABET = string.ascii_letters + string.digits


def generate_key() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8 + SECRET_LENGTH))
    return KEY_MARK + body


def key_prefix(plaintext: str) -> str:
    return plaintext[:PREFIX_LENGTH]


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def looks_like_key(plaintext: str) -> bool:
    return (
        plaintext.startswith(KEY_MARK)
        and len(plaintext) == PREFIX_LENGTH + SECRET_LENGTH
        and plaintext.isascii()
    )


def matches(plaintext: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(plaintext), stored_hash)
