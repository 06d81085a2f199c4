"""Encryption at rest for provider keys and MCP headers (Fernet).

The key comes from `CHATD_SECRET_KEY`, or from `$CHATD_DATA_DIR/secret.key`,
generated on first use with mode 0600. Losing the key makes stored provider keys
unreadable (they must be entered again); nothing else depends on it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

__all__ = ["SecretBox", "UnreadableSecret", "load_secret_key"]

KEY_FILE = "secret.key"


def load_secret_key(data_dir: Path) -> bytes:
    """`CHATD_SECRET_KEY`, else the data dir's key file (created 0600 when missing)."""
    from_env = os.environ.get("CHATD_SECRET_KEY")
    if from_env:
        return from_env.encode()
    path = data_dir / KEY_FILE
    with contextlib.suppress(FileNotFoundError):  # none yet: make one below
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key


class UnreadableSecret(ValueError):
    """A stored secret this key cannot decrypt: it was sealed with another key."""


class SecretBox:
    """Encrypts and decrypts short secrets with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as err:
            raise UnreadableSecret(
                "cannot decrypt a stored secret: CHATD_SECRET_KEY or secret.key changed"
            ) from err
