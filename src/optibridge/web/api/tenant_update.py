"""Changing a stored tenant from the API: the fields given, in one transaction.

`optibridge.store.tenants` has `add` and the config-file upsert, which refuses tenants that did not
come from a file; this is the API's partial update. Credentials are write-only: given, they replace
the stored ones; omitted, they stay. A channel whose provider settings name no secret field keeps
its stored secrets, so a client can change a host without sending the password again.

Nothing is stored unless it passes the same checks as the config file and the CLI
(channels.factory.validate_tenant): the provider settings models, and every destination (API base
URL, provider URLs, delivery lookups) against the operator's outbound policy. A channel that keeps
its stored secrets is checked with them merged in, as the send path will build it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from optibridge.channels.factory import check_api_base_url, validate_channel_config
from optibridge.core.config import SECRET_FIELD, ChannelConfig, merge_provider_settings
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.core.outbound import OutboundPolicy
from optibridge.core.secretbox import SecretBox
from optibridge.store import tenants as tenant_store

Conn = psycopg.AsyncConnection[dict[str, Any]]


class TenantUpdate(BaseModel):
    """Fields to change; omitted ones stay. `channels`, when given, is the whole new channel list:
    channels missing from it are removed (with their templates)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    api_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/$.?#][^\s]*$", max_length=2000)
    api_key: SecretStr | None = Field(default=None, description="Write-only; replaces the credentials")
    username: str | None = Field(default=None, min_length=1, max_length=200)
    password: SecretStr | None = Field(default=None, description="Write-only, with username")
    channels: list[ChannelConfig] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TenantUpdate:
        if self.api_key is not None and (self.username is not None or self.password is not None):
            raise ValueError("give either api_key, or username and password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.api_key is not None and not self.api_key.get_secret_value():
            raise ValueError("api_key must not be empty")
        if self.channels is not None:
            names = [c.name for c in self.channels]
            ids = [c.channel_id for c in self.channels]
            if len(set(names)) != len(names):
                raise ValueError("channel names must be unique within a tenant")
            if len(set(ids)) != len(ids):
                raise ValueError("channel_id values must be unique within a tenant")
        return self

    def credentials(self) -> tuple[str, dict[str, str]] | None:
        if self.api_key is not None:
            return "api_key", {"api_key": self.api_key.get_secret_value()}
        if self.username is not None and self.password is not None:
            return "login", {"username": self.username, "password": self.password.get_secret_value()}
        return None


def _names_a_secret(value: Any) -> bool:
    # Mirrors split_provider_settings: a secret field at any depth means "the secrets are given".
    if isinstance(value, dict):
        return any(
            (SECRET_FIELD.search(str(k)) and not isinstance(v, dict | list)) or _names_a_secret(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_names_a_secret(v) for v in value)
    return False


async def check(
    conn: Conn,
    box: SecretBox,
    tenant_id: str,
    change: TenantUpdate,
    policy: OutboundPolicy,
    callback_base_url: str | None = None,
) -> None:
    """ConfigError if the change, applied, would store settings the send path cannot use or that
    reach a destination the outbound policy refuses. Never quotes a submitted value."""
    if change.api_base_url is not None:
        check_api_base_url(change.api_base_url, policy)
    if change.channels is None:
        return
    stored = await tenant_store.stored_provider_secrets(conn, box, tenant_id)
    for channel in change.channels:
        kept = stored.get(channel.name)
        if kept and not _names_a_secret(channel.provider):
            # The stored secrets stay (keep_absent_secrets): judge what will be built.
            try:
                merged = merge_provider_settings(channel.provider, kept)
            except (KeyError, IndexError, TypeError, ValueError):
                merged = channel.provider  # the shape changed: judged without them (and refused)
            channel = channel.model_copy(update={"provider": merged})
        validate_channel_config(channel, policy, callback_base_url=callback_base_url)


async def update(
    conn: Conn,
    box: SecretBox,
    tenant_id: str,
    change: TenantUpdate,
    *,
    policy: OutboundPolicy | None = None,
    callback_base_url: str | None = None,
) -> bool:
    """Apply the change; returns whether the credentials changed (cached clients must go).

    ConfigError (nothing stored) if `check` refuses it; `policy` None means the strict default.
    """
    async with conn.transaction():
        source = await tenant_store.lock_source(conn, tenant_id)
        if source is None:
            raise NotFoundError(f"no tenant {tenant_id!r}")
        if source == "config":
            raise ConflictError(
                f"tenant {tenant_id!r} is defined in the config file, which would overwrite this change "
                "at the next start; edit the file instead"
            )
        await check(conn, box, tenant_id, change, policy or OutboundPolicy(), callback_base_url)
        creds = change.credentials()
        await tenant_store.update_fields(
            conn,
            tenant_id,
            name=change.name,
            api_base_url=change.api_base_url,
            auth_kind=creds[0] if creds else None,
            encrypted_credentials=box.encrypt_json(creds[1]) if creds else None,
        )
        if change.channels is not None:
            await tenant_store.replace_channels(
                conn, box, tenant_id, change.channels, keep_absent_secrets=True
            )
    return creds is not None
