"""The channels a process sends on: each built once (options, providers, rate limit, retry policy)
and kept, with its open provider connections, while the process runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from optibridge.core.config import ChannelOptions
from optibridge.core.secretbox import SecretBox
from optibridge.delivery.providers import ChannelProviders, TokenBucket, build_channel_providers
from optibridge.delivery.transitions import RetryPolicy
from optibridge.runtime import Pool
from optibridge.store import messages as message_store
from optibridge.store import tenants as tenant_store


@dataclass
class Channel:
    """What a process needs to send on one channel; built once, kept while the process runs."""

    tenant_id: str
    channel_id: int
    name: str
    kind: str
    options: ChannelOptions
    providers: ChannelProviders
    bucket: TokenBucket | None
    retry: RetryPolicy

    @property
    def chunk(self) -> int:
        return self.options.chunk

    @property
    def uncertain(self) -> str:
        return self.options.uncertain

    @property
    def lookup_url(self) -> str | None:
        return self.options.delivery_lookup_url

    @property
    def track(self) -> bool:
        return self.options.tracking


@dataclass
class ChannelRegistry:
    """One per process: the channels its send jobs use, by (tenant, Optimove channel id)."""

    pool: Pool
    box: SecretBox
    public_url: str | None
    channels: dict[tuple[str, int], Channel] = field(default_factory=dict)

    async def channel(self, tenant_id: str, channel_id: int) -> Channel:
        key = (tenant_id, channel_id)
        found = self.channels.get(key)
        if found is not None:
            return found
        async with self.pool.connection() as conn:
            row = await message_store.send_channel(conn, tenant_id, channel_id)
            if row is None:
                raise LookupError(f"tenant {tenant_id!r} has no channel {channel_id}")
            provider_settings = await tenant_store.channel_provider_settings(
                conn, self.box, tenant_id, channel_id
            )
        options = ChannelOptions.model_validate(row.options)
        providers = await build_channel_providers(row.kind, provider_settings, self.public_url)
        channel = Channel(
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
        )
        self.channels[key] = channel
        return channel

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.providers.close()
        self.channels.clear()
