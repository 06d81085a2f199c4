"""Users, API tokens (stored hashed), provider keys (encrypted), model configs."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chatd.config import TOOL_POLICIES
from chatd.store._base import StoreBase
from chatd.store._errors import InvalidRequest, NotFound
from chatd.store._ids import new_id, sha256_hex
from chatd.store._models import PRICE_KEYS, ApiToken, ModelConfig, ProviderKey, User
from chatd.store._schema import api_tokens, model_configs, provider_keys, users
from chatd.store._secrets import UnreadableSecret

__all__ = ["Accounts"]

_USERNAME = re.compile(r"[a-z0-9_.-]{1,64}")
TOKEN_PREFIX = "chatd_"
# 12 characters of the token are stored in clear for lookup (spec §3.2).
_PREFIX_CHARS = 12
# 60 s: `last_used_at` is written at most once a minute per token.
_LAST_USED_RESOLUTION = timedelta(seconds=60)
# A price above a million dollars per million tokens is a typo, and would overflow
# the cost column's 64 bits long before any real bill does.
_MAX_PRICE = Decimal(1_000_000)


class Accounts(StoreBase):
    # --- users and tokens -----------------------------------------------------------------

    async def create_user(self, username: str, *, is_admin: bool = False) -> User:
        if not _USERNAME.fullmatch(username):
            raise InvalidRequest(
                "invalid_request", "A username is 1-64 characters of a-z, 0-9, '_', '.', '-'."
            )
        user = User(id=new_id(), username=username, is_admin=is_admin, created_at=self.clock())
        try:
            async with self.db.write() as conn:
                await conn.execute(sa.insert(users).values(_asdict(user)))
        except IntegrityError as err:
            raise InvalidRequest("conflict", f"The user {username!r} already exists.") from err
        return user

    async def set_admin(self, user_id: str, is_admin: bool) -> User:
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(users).where(users.c.id == user_id).values(is_admin=is_admin)
            )
        return await self.get_user(user_id)

    async def set_tool_policy(self, user_id: str, policy: str | None) -> User:
        """Set the user's built-in tool policy ("none", "files", "all"); None returns
        them to the default. NotFound for an unknown user."""
        if policy is not None and policy not in TOOL_POLICIES:
            raise InvalidRequest(
                "invalid_request", f"A tool policy is one of {', '.join(TOOL_POLICIES)}."
            )
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.update(users).where(users.c.id == user_id).values(tool_policy=policy)
            )
        if result.rowcount == 0:
            raise NotFound("user", user_id)
        return await self.get_user(user_id)

    async def list_users(self) -> list[User]:
        """Every user, by name."""
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(users).order_by(users.c.username))
            return [User(**row._asdict()) for row in rows]

    async def get_user(self, user_id: str) -> User:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        if row is None:
            raise NotFound("user", user_id)
        return User(**row._asdict())

    async def get_user_by_name(self, username: str) -> User:
        async with self.db.read() as conn:
            query = sa.select(users).where(users.c.username == username)
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound("user", username)
        return User(**row._asdict())

    async def create_api_token(self, user_id: str, *, name: str = "") -> tuple[str, ApiToken]:
        """A new token for the user: (the token, shown once; its stored record)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiToken(
            id=new_id(),
            user_id=user_id,
            name=name,
            prefix=token[:_PREFIX_CHARS],
            created_at=self.clock(),
            last_used_at=None,
            revoked_at=None,
        )
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(api_tokens).values(_asdict(record) | {"secret_hash": sha256_hex(token)})
            )
        return token, record

    async def authenticate_token(self, token: str) -> User | None:
        """The user a token belongs to, or None for unknown, wrong or revoked tokens."""
        t = api_tokens.c
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        t.id.label("token_id"), t.secret_hash, t.revoked_at, t.last_used_at, users
                    )
                    .join(users, users.c.id == t.user_id)
                    .where(t.prefix == token[:_PREFIX_CHARS])
                )
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, sha256_hex(token)):
            return None
        now = self.clock()
        if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_RESOLUTION:
            async with self.db.write() as conn:
                await conn.execute(
                    sa.update(api_tokens).where(t.id == row.token_id).values(last_used_at=now)
                )
        return User(
            id=row.id,
            username=row.username,
            is_admin=row.is_admin,
            created_at=row.created_at,
            tool_policy=row.tool_policy,
        )

    async def revoke_api_token(self, token_id: str) -> None:
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )
        if result.rowcount == 0:
            raise NotFound("api token", token_id)

    # --- provider keys and model configs ---------------------------------------------------

    async def create_provider_key(self, name: str, provider: str, secret: str) -> ProviderKey:
        """Store a provider API key encrypted; only its last 4 characters stay readable."""
        now = self.clock()
        key = ProviderKey(
            id=new_id(),
            name=name,
            provider=provider,
            last4=secret[-4:],
            created_at=now,
            updated_at=now,
        )
        ciphertext = self._box().encrypt(secret)
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    sa.insert(provider_keys).values(_asdict(key) | {"ciphertext": ciphertext})
                )
        except IntegrityError as err:
            raise InvalidRequest("conflict", f"A provider key named {name!r} exists.") from err
        return key

    async def reveal_provider_key(self, key_id: str) -> str:
        """The secret in clear, for the provider client only; never returned by a route."""
        async with self.db.read() as conn:
            ciphertext = await conn.scalar(
                sa.select(provider_keys.c.ciphertext).where(provider_keys.c.id == key_id)
            )
        if ciphertext is None:
            raise NotFound("provider key", key_id)
        return self._box().decrypt(ciphertext)

    async def create_model_config(
        self,
        name: str,
        provider: str,
        model: str,
        *,
        base_url: str | None = None,
        provider_key_id: str | None = None,
        options: dict[str, Any] | None = None,
        context_limit: int | None = None,
        compaction_threshold_percent: int = 70,
        enabled: bool = True,
        is_default: bool = False,
        pricing: Mapping[str, Any] | None = None,
        provider_tools: Sequence[str] | None = None,
    ) -> ModelConfig:
        now = self.clock()
        config = ModelConfig(
            id=new_id(),
            name=name,
            provider=provider,
            model=model,
            base_url=base_url,
            provider_key_id=provider_key_id,
            options=options or {},
            context_limit=context_limit,
            compaction_threshold_percent=compaction_threshold_percent,
            enabled=enabled,
            is_default=is_default,
            created_at=now,
            updated_at=now,
            pricing=_pricing(pricing),
            provider_tools=list(dict.fromkeys(provider_tools)) if provider_tools else None,
        )
        try:
            async with self.db.write() as conn:
                if is_default:
                    await conn.execute(
                        sa.update(model_configs)
                        .where(model_configs.c.is_default)
                        .values(is_default=False, updated_at=now)
                    )
                await conn.execute(sa.insert(model_configs).values(_asdict(config)))
        except IntegrityError as err:
            raise InvalidRequest("conflict", f"A model config named {name!r} exists.") from err
        return config

    async def get_model_config(
        self, config_id: str | None = None, *, or_default: bool = False
    ) -> ModelConfig:
        """A model config by id; `None` means the deployment default.

        `or_default`: the default when no config has that id (one query either way).
        """
        c = model_configs.c
        query = sa.select(model_configs)
        if config_id is None:
            query = query.where(c.is_default)
        elif or_default:
            query = query.where(sa.or_(c.id == config_id, c.is_default))
            query = query.order_by((c.id == config_id).desc()).limit(1)
        else:
            query = query.where(c.id == config_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound("model config", config_id or "default")
        return ModelConfig(**row._asdict())

    async def list_model_configs(self) -> list[ModelConfig]:
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(model_configs).order_by(model_configs.c.name))
            return [ModelConfig(**row._asdict()) for row in rows]

    async def update_model_config(self, config_id: str, **changes: Any) -> ModelConfig:
        """Change a config's fields (name, model, base_url, provider_key_id, options,
        context_limit, compaction_threshold_percent, enabled, is_default, pricing,
        provider_tools)."""
        allowed = {
            "name",
            "model",
            "base_url",
            "provider_key_id",
            "options",
            "context_limit",
            "compaction_threshold_percent",
            "enabled",
            "is_default",
            "pricing",
            "provider_tools",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidRequest(
                "invalid_request", f"Unknown model config fields {sorted(unknown)}."
            )
        if "pricing" in changes:
            changes["pricing"] = _pricing(changes["pricing"])
        if "provider_tools" in changes:
            tools = changes["provider_tools"]
            changes["provider_tools"] = list(dict.fromkeys(tools)) if tools else None
        await self.get_model_config(config_id)
        now = self.clock()
        try:
            async with self.db.write() as conn:
                if changes.get("is_default"):
                    await conn.execute(
                        sa.update(model_configs)
                        .where(model_configs.c.is_default)
                        .values(is_default=False, updated_at=now)
                    )
                await conn.execute(
                    sa.update(model_configs)
                    .where(model_configs.c.id == config_id)
                    .values(**changes, updated_at=now)
                )
        except IntegrityError as err:
            raise InvalidRequest("conflict", "Another model config has that name.") from err
        return await self.get_model_config(config_id)

    async def delete_model_config(self, config_id: str) -> None:
        """Remove a config; chats that used it fall back to the default model."""
        config = await self.get_model_config(config_id)
        if config.is_default:
            raise InvalidRequest(
                "conflict", "The default model config cannot be deleted; make another default."
            )
        async with self.db.write() as conn:
            await conn.execute(sa.delete(model_configs).where(model_configs.c.id == config_id))

    async def list_provider_keys(self) -> list[ProviderKey]:
        k = provider_keys.c
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(k.id, k.name, k.provider, k.last4, k.created_at, k.updated_at).order_by(
                    k.name
                )
            )
            return [ProviderKey(**row._asdict()) for row in rows]

    async def unreadable_provider_keys(self) -> list[ProviderKey]:
        """The stored keys this store's secret key cannot decrypt (sealed with another)."""
        k = provider_keys.c
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(provider_keys).order_by(k.name))).all()
        box = self._box()
        unreadable = []
        for row in rows:
            fields = row._asdict()
            try:
                box.decrypt(fields.pop("ciphertext"))
            except UnreadableSecret:
                unreadable.append(ProviderKey(**fields))
        return unreadable

    async def delete_provider_key(self, key_id: str) -> None:
        """Remove a key; refused (409) while a model config uses it."""
        async with self.db.write() as conn:
            used = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(model_configs)
                .where(model_configs.c.provider_key_id == key_id)
            )
            if used:
                raise InvalidRequest(
                    "conflict", "A model config uses this key; change or delete it first."
                )
            result = await conn.execute(
                sa.delete(provider_keys).where(provider_keys.c.id == key_id)
            )
            if result.rowcount == 0:
                raise NotFound("provider key", key_id)


def _pricing(prices: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Prices as stored: known kinds only, each a decimal string (None: unpriced)."""
    if not prices:
        return None
    unknown = sorted(set(prices) - set(PRICE_KEYS))
    if unknown:
        raise InvalidRequest(
            "invalid_request", f"Unknown prices {unknown}; known: {', '.join(PRICE_KEYS)}."
        )
    stored: dict[str, str] = {}
    for key, value in prices.items():
        if value is None:
            continue
        try:
            price = Decimal(str(value))
        except InvalidOperation:
            price = Decimal("NaN")
        if not price.is_finite() or not 0 <= price <= _MAX_PRICE:
            raise InvalidRequest(
                "invalid_request",
                f"{key} is USD per million tokens: a number from 0 to {_MAX_PRICE}.",
            )
        stored[key] = format(price.normalize(), "f")
    return stored or None


def _asdict(value: Any) -> dict[str, Any]:
    return {field: getattr(value, field) for field in value.__struct_fields__}
