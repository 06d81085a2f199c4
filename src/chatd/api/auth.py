"""Bearer API tokens: their format, hashing, and the request dependency that checks them.

Token format (service spec §6.2): `chatd_<8-char id>_<43-char secret>`. Only the
SHA-256 of the whole token is stored; lookups go by the id part and compare the
hash in constant time. The store answers "whose token is this" through
`TokenVerifier`; this module never touches SQL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Principal",
    "TokenVerifier",
    "hash_token",
    "new_token",
    "parse_token",
    "token_matches",
]

_TOKEN = re.compile(r"^chatd_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    username: str
    is_admin: bool = False


class TokenVerifier(Protocol):
    async def principal_for_token(self, token_id: str, token_hash: str) -> Principal | None:
        """The token's user, or None when the id is unknown, revoked or the hash differs."""
        ...


def new_token() -> tuple[str, str]:
    """A fresh `(token_id, token)`; store only `hash_token(token)`."""
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
    return token_id, f"chatd_{token_id}_{secrets.token_urlsafe(32)}"


def parse_token(token: str) -> str | None:
    """The id part of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)
