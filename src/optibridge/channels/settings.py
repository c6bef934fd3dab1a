"""Validated settings of each provider type, as stored per channel (a mapping with a `type`).

Keys ending in password/secret/token/api_key/private_key/credentials are stored encrypted by the
product, so every secret here is named that way. Validation happens once, when a provider is
built; nothing here runs per message.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from optibridge.channels.http_client import HOP_BY_HOP
from optibridge.channels.http_options import HttpClientOptions
from optibridge.channels.mime import check_address
from optibridge.channels.provider_settings import (
    EXTRA_SETTINGS_BY_TYPE,
    EXTRA_TYPES_BY_KIND,
    ExtraProviderSettings,
)
from optibridge.channels.setting_checks import CONTROL, check_http_url, multi_line_field

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")  # RFC 1123
# Strings that are not sent as one line (a JSON body template, a service-account document).
_MULTILINE_FIELDS = frozenset({"body_template", "credentials"})
_PROJECT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
_QUOTED_TAIL = re.compile(r":?\s*(['\"]).*\1\s*$", re.S)  # the value a message quotes at its end


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Valid names, single-line values; hop-by-hop headers (Transfer-Encoding, Content-Length,
    Connection, ...) are dropped: framing is the client's, and a second one is request smuggling."""
    for name, value in headers.items():
        if _HEADER_NAME.fullmatch(name) is None:
            raise ValueError(f"invalid header name {name[:64]!r}")
        if CONTROL.search(value):
            raise ValueError(f"header {name!r} contains a line break or NUL")
    return {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP}


def _check_path(value: str) -> str:
    if not value.startswith("/") or any(c in value for c in " \t?#"):
        raise ValueError("must be a path starting with / (no spaces, query or fragment)")
    return value


def _check_host_name(value: str, *, literal_ok: bool = False) -> str:
    """A DNS host name (RFC 1123); `literal_ok`: or an IP address (bare, or [bracketed])."""
    if literal_ok:
        try:
            ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            pass
        else:
            return value
    if _HOST_NAME.fullmatch(value) is None:
        raise ValueError("must be a valid host name (letters, digits, '-' and '.')")
    return value


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str | None = Field(default=None, description="Label in logs and metrics; defaults to the type.")

    @model_validator(mode="after")
    def _single_line_strings(self) -> _Settings:
        # Strings end up in mail headers, HTTP request lines and headers: a CR, LF or NUL there
        # would inject headers (a Bcc into every mail). The error names the field, never its value.
        fields = ((name, getattr(self, name)) for name in type(self).model_fields)
        if (bad := multi_line_field(fields, _MULTILINE_FIELDS)) is not None:
            raise ValueError(f"{bad} contains a line break or NUL")
        return self


class HttpOptions(_Settings, HttpClientOptions):
    """The base of the HTTP providers' settings here (fields: http_options.HttpClientOptions)."""


class SmtpSettings(_Settings):
    type: Literal["smtp"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default: 465 implicit, 587 starttls, else 25
    tls: Literal["starttls", "implicit", "opportunistic", "none"] = "starttls"
    validate_certs: bool = True
    cert_bundle: str | None = None  # CA file to verify the server with (a private CA); default: system CAs
    username: str | None = None
    password: str | None = None
    from_address: str
    from_name: str | None = None
    envelope_from: str | None = None  # MAIL FROM (bounce address); default from_address
    message_id_domain: str | None = None  # default: the domain of from_address
    local_hostname: str | None = None  # EHLO name; default: this host's FQDN
    # Connections per worker process; opened as needed. Without pipelining a message costs four
    # round trips, so at a server's 50-200 ms the rate is pool_size / (4 x latency).
    pool_size: int = Field(default=512, ge=1, le=2048)
    # Connections being opened (TCP, greeting, EHLO, STARTTLS, AUTH) at once, per worker process:
    # the pool fills at this pace rather than with pool_size SYNs at once. A burst past the
    # server's listen backlog (100 in Postfix, aiosmtpd, most MTAs) leaves connections the client
    # thinks open while the server never accepted them, so the greeting never comes and each
    # waits timeout_s (measured: two 512-connection workers, 31 s stalls, bench/send.py).
    connects_at_once: int = Field(default=32, ge=1, le=2048)
    max_messages_per_connection: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    throttle_retry_after_s: float = Field(default=30.0, ge=0)

    @field_validator("from_address", "envelope_from")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_address(value)
        except ValueError as exc:
            # check_address quotes the address; the reason is enough (no submitted text echoed).
            raise ValueError(_QUOTED_TAIL.sub("", str(exc))) from None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host_name(value, literal_ok=True)

    @field_validator("message_id_domain")
    @classmethod
    def _message_id_domain(cls, value: str | None) -> str | None:
        return None if value is None else _check_host_name(value)

    @field_validator("local_hostname")
    @classmethod
    def _local_hostname(cls, value: str | None) -> str | None:
        return None if value is None else _check_host_name(value, literal_ok=True)

    @model_validator(mode="after")
    def _auth_pair(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        # Port and TLS mode must agree, or every connection fails (and the send job with it):
        # 465 speaks TLS from the first byte, 25/587 start in plain text.
        port = self.effective_port
        if self.tls == "implicit" and port in (25, 587):
            raise ValueError(f"tls 'implicit' cannot work on port {port} (plain-text SMTP); use starttls")
        if self.tls != "implicit" and port == 465:
            raise ValueError(f"tls {self.tls!r} cannot work on port 465 (implicit TLS); use tls 'implicit'")
        if self.tls == "none" and self.cert_bundle is not None:
            raise ValueError("cert_bundle needs TLS (tls is 'none')")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"implicit": 465, "starttls": 587}.get(self.tls, 25)

    @property
    def effective_message_id_domain(self) -> str:
        return self.message_id_domain or self.from_address.rpartition("@")[2]


class TwilioSettings(HttpOptions):
    type: Literal["twilio"]
    account_sid: str = Field(min_length=1, pattern=r"^[A-Za-z0-9]+$")
    auth_token: str = Field(min_length=1)
    from_number: str | None = None  # E.164 sender, or:
    messaging_service_sid: str | None = None
    base_url: str = "https://api.twilio.com"
    status_callback: bool = True  # ask for delivery receipts (needs the product's callback base URL)
    status_callback_path: str = "/receipts/twilio"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("status_callback_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)

    @model_validator(mode="after")
    def _one_sender(self) -> TwilioSettings:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of from_number and messaging_service_sid")
        return self


class JsonSettings(HttpOptions):
    """Any HTTP API that takes one JSON request per message (SMS or push)."""

    type: Literal["json"]
    url: str
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    auth_token: str | None = None  # sent as "<auth_header>: <auth_scheme> <auth_token>"
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    body_template: str = Field(min_length=2)  # JSON with {{placeholders}} inside strings
    success_statuses: list[int] | None = None  # default: any 2xx
    provider_id_path: str | None = None  # dot path into the response JSON, e.g. "data.id"
    recipient_error_statuses: list[int] = Field(default_factory=list)  # -> PERMANENT bounce
    status_callback_path: str = "/receipts/json"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("headers")
    @classmethod
    def _headers_ok(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)

    @field_validator("status_callback_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)

    @field_validator("auth_header")
    @classmethod
    def _auth_header(cls, value: str) -> str:
        if _HEADER_NAME.fullmatch(value) is None:
            raise ValueError(f"invalid header name {value!r}")
        return value


class FcmSettings(HttpOptions):
    type: Literal["fcm"]
    credentials: str | dict[str, Any]  # the service-account JSON (text or object)
    project_id: str | None = None  # default: the service account's project_id
    base_url: str = "https://fcm.googleapis.com"
    token_uri: str | None = None  # default: the service account's token_uri (tests point it at a fake)
    http2: bool = True  # multiplexed HTTP/2 to an https base_url (channels/http2.py); else HTTP/1.1

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("token_uri")
    @classmethod
    def _token_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("credentials")
    @classmethod
    def _service_account(cls, value: str | dict[str, Any]) -> dict[str, Any]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError("credentials must be a service-account JSON document") from None
            if not isinstance(value, dict):
                raise ValueError("credentials must be a service-account JSON object")
        missing = [k for k in ("client_email", "private_key") if not isinstance(value.get(k), str)]
        if missing:
            raise ValueError(f"credentials lack {', '.join(missing)}")
        token_uri = value.get("token_uri")
        if token_uri is not None:
            if not isinstance(token_uri, str):
                raise ValueError("credentials token_uri must be a string")
            try:
                check_http_url(token_uri)
            except ValueError as exc:
                raise ValueError(f"credentials token_uri {exc}") from None
        return value

    @model_validator(mode="after")
    def _project(self) -> FcmSettings:
        if not self.effective_project_id:
            raise ValueError("project_id is missing (and not in the credentials)")
        if _PROJECT_ID.fullmatch(self.effective_project_id) is None:  # it goes into the URL path
            raise ValueError("project_id may hold only letters, digits, '-', '_', '.' and ':'")
        return self

    @property
    def effective_token_uri(self) -> str:
        return self.token_uri or str(self.service_account.get("token_uri") or DEFAULT_TOKEN_URI)

    @property
    def service_account(self) -> dict[str, Any]:
        assert isinstance(self.credentials, dict)  # normalised by the validator
        return self.credentials

    @property
    def effective_project_id(self) -> str:
        return self.project_id or str(self.service_account.get("project_id") or "")


class WebhookSettings(HttpOptions):
    type: Literal["webhook"]
    url: str
    signing_secret: str = Field(min_length=16)
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_allow_private(cls, data: Any) -> Any:
        # Was a tenant field: a tenant could open loopback to its own campaigns. Refused with a
        # pointer rather than "extra field", so configs that set it learn where it went.
        if isinstance(data, dict) and "allow_private" in data:
            raise ValueError("allow_private is an operator setting now: allow_private_destinations")
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("headers")
    @classmethod
    def _headers_ok(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)


ProviderSettings = (
    SmtpSettings | TwilioSettings | JsonSettings | FcmSettings | WebhookSettings | ExtraProviderSettings
)

SETTINGS_BY_TYPE: dict[str, type[ProviderSettings]] = {
    "smtp": SmtpSettings,
    "twilio": TwilioSettings,
    "json": JsonSettings,
    "fcm": FcmSettings,
    "webhook": WebhookSettings,
    **EXTRA_SETTINGS_BY_TYPE,  # SES, SendGrid, Mailgun, Postmark, Vonage, Plivo, APNs
}
TYPES_BY_KIND: dict[str, tuple[str, ...]] = {
    "email": ("smtp", *EXTRA_TYPES_BY_KIND["email"]),
    "sms": ("twilio", "json", *EXTRA_TYPES_BY_KIND["sms"]),
    "push": ("fcm", "json", *EXTRA_TYPES_BY_KIND["push"]),
    "webhook": ("webhook",),
}
