"""The HTTP client's bounds and egress: one definition for the settings of every HTTP provider
(channels.settings: Twilio, FCM, JSON, webhook; channels.provider_settings: SES, SendGrid, Mailgun,
Postmark, Vonage, Plivo, APNs), which HttpChannel takes as they are."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

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
    # An authenticating proxy (Basic, RFC 7617: Proxy-Authorization on the CONNECT or the
    # forwarded request). Separate fields, not user:password@ in proxy_url: the password is stored
    # encrypted (its name ends in "password", core.config.SECRET_FIELD), the URL in plain. A line
    # break or NUL in either is refused by every provider's settings (`_single_line_strings`).
    proxy_username: str | None = Field(default=None, min_length=1, max_length=256)
    proxy_password: str | None = Field(default=None, max_length=1024)

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        # No user:password@ here: the URL is stored in plain (proxy_username/proxy_password).
        if value is None:
            return None
        try:
            netloc = urlsplit(value).netloc
        except ValueError:  # malformed: check_http_url says how
            netloc = ""
        if "@" in netloc:
            raise ValueError("must not carry a login: set proxy_username and proxy_password instead")
        return check_http_url(value, base_only=True)

    @model_validator(mode="after")
    def _proxy_login(self) -> HttpClientOptions:
        if (self.proxy_username is None) != (self.proxy_password is None):
            raise ValueError("proxy_username and proxy_password go together")
        if self.proxy_username is not None:
            if self.proxy_url is None:
                raise ValueError("proxy_username and proxy_password need a proxy_url")
            if ":" in self.proxy_username:  # Basic auth joins the two with the first ":"
                raise ValueError("proxy_username must not contain ':'")
        return self

    def proxy_login(self) -> tuple[str, str] | None:
        """(username, password) for the channel's proxy, or None."""
        if self.proxy_username is None or self.proxy_password is None:
            return None
        return self.proxy_username, self.proxy_password
