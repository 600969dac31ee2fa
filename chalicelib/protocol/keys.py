"""Ed25519 keys: the `ed25519:` text form, and key files readable by their owner only."""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from .encoding import EncodingError, b64url_decode, b64url_encode

KEY_PREFIX = "ed25519:"


class InvalidKey(ValueError):
    """A key is malformed or its file cannot be used."""


def parse_public_key(text: str) -> nacl.signing.VerifyKey:
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise InvalidKey(f"public key must start with {KEY_PREFIX!r}")
    return _verify_key(text)


@functools.lru_cache(maxsize=4096)
def _verify_key(text: str) -> nacl.signing.VerifyKey:
    """Cached: the same reporters and issuers sign again and again (a refusal is never cached)."""
    try:
        raw = b64url_decode(text[len(KEY_PREFIX):])
    except EncodingError as exc:
        raise InvalidKey(f"public key: {exc}") from None
    if len(raw) != 32:
        raise InvalidKey(f"public key must be 32 bytes, got {len(raw)}")
    return nacl.signing.VerifyKey(raw)


def public_key_text(verify_key: nacl.signing.VerifyKey) -> str:
    return KEY_PREFIX + b64url_encode(bytes(verify_key))


def verify_raw(public_key: str, message: bytes, signature: bytes) -> bool:
    try:
        parse_public_key(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class KeyPair:
    """A signing key with its public text form computed once."""

    signing_key: nacl.signing.SigningKey
    public: str

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_seed(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        key = nacl.signing.SigningKey(seed)
        return cls(key, public_key_text(key.verify_key))

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write the key with mode 0600 from the first byte; never widen an existing file's mode."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise InvalidKey(f"{path} exists; refusing to overwrite a key") from None
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump({"type": "ed25519", "seed": b64url_encode(bytes(self.signing_key)),
                       "public": self.public}, handle)
            handle.write("\n")

    @classmethod
    def load(cls, path: str | Path) -> KeyPair:
        path = Path(path)
        try:
            mode = path.stat().st_mode & 0o777
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise InvalidKey(f"no key file at {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidKey(f"cannot read key file {path}: {exc}") from None
        if mode & 0o077:
            raise InvalidKey(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
        try:
            pair = cls.from_seed(b64url_decode(doc["seed"]))
        except (KeyError, TypeError, EncodingError, ValueError):
            raise InvalidKey(f"{path} is not a netimmune key file") from None
        if doc.get("public") not in (None, pair.public):
            raise InvalidKey(f"{path}: stored public key does not match the seed")
        return pair
