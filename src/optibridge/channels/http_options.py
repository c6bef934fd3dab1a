"""The HTTP client's bounds and egress: one definition for the settings of every HTTP provider
(channels.settings: Twilio, FCM, JSON, webhook; channels.provider_settings: SES, SendGrid, Mailgun,
Postmark, Vonage, Plivo, APNs), which HttpChannel takes as they are."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from optibridge.channels.setting_checks import check_http_url


class HttpClientOptions(BaseModel):
    # Requests at once per worker process: at a provider's 50-300 ms this, not CPU, bounds the rate
    # (rate = max_connections / latency). The default matches ChannelOptions' default sends in
    # flight, so it never caps them; connections are opened only as needed.
    max_connections: int = Field(default=512, ge=1, le=4096)
    timeout_s: float = Field(default=10.0, gt=0, le=300)  # one whole request, connect to last byte
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    # Egress through an HTTP(S) proxy (CONNECT for https destinations). Default: the operator's
    # HTTPS_PROXY/HTTP_PROXY/NO_PROXY when Settings.outbound_proxy_from_env, else direct.
    proxy_url: str | None = None

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        # No user:password@: this field is stored in plain (only fields named as secrets are
        # encrypted); an authenticating proxy is the operator's, in HTTPS_PROXY.
        return None if value is None else check_http_url(value, base_only=True)
