"""The channels a process sends on: each built once (options, providers, rate limit, retry policy)
and kept, with its open provider connections, until the channel changes.

Every change to a channel's row bumps its `version` (migration 0007, a trigger, whoever writes).
A send job asks for its channel once per slice (`using`), which costs one index lookup: when the
version moved, the channel is built again from the database, and the old build's providers are
closed once no slice uses them. So a rate, provider or option changed through the API or the CLI
reaches every worker by its next slice, without a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

from optibridge.core.config import ChannelOptions
from optibridge.core.outbound import OutboundPolicy
from optibridge.core.secretbox import SecretBox
from optibridge.delivery.lookup import LookupTarget
from optibridge.delivery.providers import ChannelProviders, TokenBucket, build_channel_providers
from optibridge.delivery.transitions import RetryPolicy
from optibridge.runtime import Pool
from optibridge.store import messages as message_store
from optibridge.store import tenants as tenant_store
from optibridge.store.messages import Conn


@dataclass
class Channel:
    """What a process needs to send on one channel; built once per version of the channel."""

    tenant_id: str
    channel_id: int
    name: str
    kind: str
    options: ChannelOptions
    providers: ChannelProviders
    bucket: TokenBucket | None
    retry: RetryPolicy
    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    version: int = 0
    users: int = 0  # slices using this build now
    retired: bool = False  # a newer build replaced it: close its providers when users reaches 0
    # The crash reconcile's delivery lookup failed: not asked again before this (monotonic), see
    # reconcile.py; a new build (the lookup's URL changed, say) asks at once.
    lookup_after: float = 0.0
    lookup_failures: int = 0

    @property
    def chunk(self) -> int:
        return self.options.chunk

    @property
    def uncertain(self) -> str:
        return self.options.uncertain

    @property
    def lookup_url(self) -> LookupTarget | None:
        """The delivery lookup, with the outbound policy it is reached under."""
        url = self.options.delivery_lookup_url
        return LookupTarget(url, self.policy) if url else None

    @property
    def track(self) -> bool:
        return self.options.tracking


@dataclass
class ChannelRegistry:
    """One per process: the channels its send jobs use, by (tenant, Optimove channel id)."""

    pool: Pool
    box: SecretBox
    public_url: str | None
    # The operator's outbound policy (Settings.allow_private_destinations); the default is strict.
    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    channels: dict[tuple[str, int], Channel] = field(default_factory=dict)
    proxy_from_env: bool = True  # Settings.outbound_proxy_from_env

    async def channel(self, tenant_id: str, channel_id: int, conn: Conn | None = None) -> Channel:
        """The channel as it is now in the database: the kept build if its version is current."""
        if conn is None:
            async with self.pool.connection() as fresh:
                return await self._current(fresh, tenant_id, channel_id)
        return await self._current(conn, tenant_id, channel_id)

    @contextlib.asynccontextmanager
    async def using(self, conn: Conn, tenant_id: str, channel_id: int) -> AsyncIterator[Channel]:
        """The current channel, kept open (its providers) until the block ends."""
        ch = await self._current(conn, tenant_id, channel_id)
        ch.users += 1
        try:
            yield ch
        finally:
            ch.users -= 1
            if ch.retired and ch.users == 0:
                await ch.providers.close()

    async def _current(self, conn: Conn, tenant_id: str, channel_id: int) -> Channel:
        key = (tenant_id, channel_id)
        found = self.channels.get(key)
        if found is not None:
            version = await message_store.channel_version(conn, tenant_id, channel_id)
            if version == found.version:
                return found
        built = await self._build(conn, tenant_id, channel_id)
        if found is not None:
            found.retired = True
            if found.users == 0:
                await found.providers.close()
        self.channels[key] = built
        return built

    async def _build(self, conn: Conn, tenant_id: str, channel_id: int) -> Channel:
        row = await message_store.send_channel(conn, tenant_id, channel_id)
        if row is None:
            raise LookupError(f"tenant {tenant_id!r} has no channel {channel_id}")
        provider_settings = await tenant_store.channel_provider_settings(
            conn, self.box, tenant_id, channel_id
        )
        options = ChannelOptions.model_validate(row.options)
        providers = await build_channel_providers(
            row.kind,
            provider_settings,
            self.public_url,
            policy=self.policy,
            proxy_from_env=self.proxy_from_env,
        )
        return Channel(
            tenant_id=tenant_id,
            channel_id=channel_id,
            name=row.name,
            kind=row.kind,
            options=options,
            providers=providers,
            bucket=TokenBucket(options.rate_per_s) if options.rate_per_s else None,
            retry=RetryPolicy(
                max_attempts=options.max_attempts,
                max_lateness=timedelta(hours=options.max_lateness_hours),
                assume_sent_when_uncertain=options.uncertain == "assume_sent",
            ),
            version=row.version,
            policy=self.policy,
        )

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.providers.close()
        self.channels.clear()
