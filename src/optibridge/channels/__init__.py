"""Provider adapters: one small interface, one module per provider type.

    provider = build_provider("email", {"type": "smtp", "host": ..., "from_address": ...})
    await provider.open()            # every adapter is also an async context manager
    results = await provider.send_many(messages)
    await provider.close()

Adapters never raise for provider or network errors; they return a classified `SendResult`.
"""

from optibridge.channels.base import OutboundMessage, Outcome, Provider, SendResult
from optibridge.channels.factory import build_provider, validate_settings

__all__ = ["OutboundMessage", "Outcome", "Provider", "SendResult", "build_provider", "validate_settings"]
