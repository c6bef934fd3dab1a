"""Loopback servers that speak the request and receipt shapes of SES, SendGrid, Mailgun,
Postmark, Vonage, Plivo (HTTP/1.1: `ProviderSink`) and APNs (HTTP/2: `ApnsSink`), and
`ReceiptSigner`, which signs webhooks as each provider does, for tests, benches and demos."""

from optibridge.sinks.providers.apns import ApnsSink
from optibridge.sinks.providers.http import ProviderRequest, ProviderSink
from optibridge.sinks.providers.receipts import ReceiptSigner

__all__ = ["ApnsSink", "ProviderRequest", "ProviderSink", "ReceiptSigner"]
