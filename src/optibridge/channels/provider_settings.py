"""Settings of the providers users already pay for: SES, SendGrid, Mailgun, Postmark (e-mail),
Vonage, Plivo (SMS) and APNs (push).

Registered in `channels.settings` (SETTINGS_BY_TYPE, TYPES_BY_KIND), which imports this module;
so this module imports nothing from it; the rules both need (single-line strings, http(s) URLs)
are in channels.setting_checks. Secrets are named so the product stores them encrypted
(core.config.SECRET_FIELD: a name ending in password/secret/token/api_key/private_key/credentials).

Each model lists the places it makes the service connect to (`destinations`), which the factory
checks against the operator's outbound policy when the settings are written.
"""

from __future__ import annotations

import base64
import re
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_private_key
from pydantic import ConfigDict, Field, field_validator, model_validator

from optibridge.channels.http_options import HttpClientOptions
from optibridge.channels.setting_checks import check_http_url, multi_line_field

_MULTILINE = frozenset({"signing_private_key", "webhook_public_key"})
_REGION = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"
_ADDRESS = re.compile(r"^[^@\s<>\"]{1,64}@[A-Za-z0-9.-]{1,253}$")


def _check_address(value: str) -> str:
    if _ADDRESS.fullmatch(value) is None:
        raise ValueError("must be a plain e-mail address (local@domain)")
    return value


class _ProviderSettings(HttpClientOptions):
    """What every provider here shares: one-line strings, and the HTTP client's bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str | None = Field(default=None, description="Label in logs and metrics; defaults to the type.")

    @model_validator(mode="after")
    def _single_line_strings(self) -> _ProviderSettings:
        # Strings end up in HTTP headers and request lines: a CR, LF or NUL would inject headers.
        fields = ((name, getattr(self, name)) for name in type(self).model_fields)
        if (bad := multi_line_field(fields, _MULTILINE)) is not None:
            raise ValueError(f"{bad} contains a line break or NUL")
        return self

    def destinations(self) -> list[tuple[str, str]]:
        raise NotImplementedError


class _EmailSettings(_ProviderSettings):
    from_address: str
    from_name: str | None = None

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        return _check_address(value)


class SesSettings(_EmailSettings):
    """Amazon SES API v2 SendEmail, signed with SigV4; events through SNS (signed by AWS)."""

    type: Literal["ses"]
    region: str = Field(pattern=_REGION)
    access_key_id: str = Field(pattern=r"^[A-Z0-9]{16,128}$")
    aws_secret: str = Field(min_length=1)
    session_token: str | None = None
    configuration_set_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    base_url: str | None = None  # default https://email.<region>.amazonaws.com
    # SNS notifications are accepted only from these topics: SNS signs every topic's messages
    # with the same AWS key, so the signature alone does not say whose topic it came from.
    sns_topic_arns: list[str] = Field(default_factory=list, max_length=16)
    # Where SNS signing certificates may be fetched from; the SigningCertURL must sit under it.
    # Default https://sns.<region>.amazonaws.com; tests and the emulator point it at a sink.
    sns_cert_base_url: str | None = None

    @field_validator("base_url", "sns_cert_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, base_only=True)

    @field_validator("sns_topic_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}", arn) is None:
                raise ValueError("sns_topic_arns must hold SNS topic ARNs")
        return value

    @property
    def effective_base_url(self) -> str:
        return self.base_url or f"https://email.{self.region}.amazonaws.com"

    @property
    def effective_cert_base_url(self) -> str:
        return self.sns_cert_base_url or f"https://sns.{self.region}.amazonaws.com"

    def destinations(self) -> list[tuple[str, str]]:
        return [("base_url", self.effective_base_url), ("sns_cert_base_url", self.effective_cert_base_url)]


def load_sendgrid_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The "Verification Key" SendGrid shows: base64 of a DER SubjectPublicKeyInfo (P-256)."""
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    try:
        key = load_der_public_key(base64.b64decode(body, validate=True))
    except ValueError:
        raise ValueError("webhook_public_key is not a base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("webhook_public_key must be an ECDSA P-256 key")
    return key


class SendgridSettings(_EmailSettings):
    """SendGrid v3 mail/send; events through the signed Event Webhook (ECDSA P-256)."""

    type: Literal["sendgrid"]
    api_key: str = Field(min_length=1)
    base_url: str = "https://api.sendgrid.com"
    webhook_public_key: str | None = None  # without it, event webhooks are refused

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, base_only=True)

    @field_validator("webhook_public_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None:
            load_sendgrid_public_key(value)
        return value

    def destinations(self) -> list[tuple[str, str]]:
        return [("base_url", self.base_url)]


class MailgunSettings(_EmailSettings):
    """Mailgun messages API; events through webhooks signed with HMAC-SHA256."""

    type: Literal["mailgun"]
    domain: str = Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
    api_key: str = Field(min_length=1)
    base_url: str = "https://api.mailgun.net"  # EU accounts: https://api.eu.mailgun.net
    webhook_signing_secret: str | None = None  # the "HTTP webhook signing key"

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, base_only=True)

    def destinations(self) -> list[tuple[str, str]]:
        return [("base_url", self.base_url)]


class PostmarkSettings(_EmailSettings):
    """Postmark email API; webhooks authenticated with basic auth on the webhook URL."""

    type: Literal["postmark"]
    server_token: str = Field(min_length=1)
    message_stream: str = Field(default="outbound", pattern=r"^[a-z0-9-]{1,64}$")
    base_url: str = "https://api.postmarkapp.com"
    webhook_username: str | None = Field(default=None, pattern=r"^[^:]{1,128}$")
    webhook_password: str | None = Field(default=None, min_length=16)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, base_only=True)

    @model_validator(mode="after")
    def _pair(self) -> PostmarkSettings:
        if (self.webhook_username is None) != (self.webhook_password is None):
            raise ValueError("webhook_username and webhook_password go together")
        return self

    def destinations(self) -> list[tuple[str, str]]:
        return [("base_url", self.base_url)]


class VonageSettings(_ProviderSettings):
    """Vonage SMS API (rest.nexmo.com/sms/json); delivery receipts signed with the signature secret."""

    type: Literal["vonage"]
    api_key: str = Field(min_length=1, pattern=r"^[A-Za-z0-9]+$")
    api_secret: str = Field(min_length=1)
    from_number: str = Field(min_length=1, max_length=15)  # E.164 digits or an alphanumeric id
    base_url: str = "https://rest.nexmo.com"
    signature_secret: str | None = None  # without it, delivery receipts are refused
    signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = "sha256"
    # Delivery receipts go here (the SMS API's `callback`); default: the account's DLR webhook URL.
    # Ours is {public_url}/r/vonage/<tenant>/<channel id>.
    status_callback_url: str | None = None

    @field_validator("status_callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, base_only=True)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, base_only=True)

    def destinations(self) -> list[tuple[str, str]]:
        return [("base_url", self.base_url)]


class PlivoSettings(_ProviderSettings):
    """Plivo Message API; status callbacks signed with X-Plivo-Signature-V3 (the auth token)."""

    type: Literal["plivo"]
    auth_id: str = Field(pattern=r"^[A-Z0-9]{10,40}$")
    auth_token: str = Field(min_length=1)
    from_number: str = Field(min_length=1, max_length=20)
    base_url: str = "https://api.plivo.com"
    # Status callbacks (the message's `url`): {public_url}/r/plivo/<tenant>/<channel id>; each
    # message adds ?message_id=<id>. Without it, Plivo reports nothing back.
    status_callback_url: str | None = None

    @field_validator("status_callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, base_only=True)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, base_only=True)

    def destinations(self) -> list[tuple[str, str]]:
        return [("base_url", self.base_url)]


class ApnsSettings(_ProviderSettings):
    """Apple Push Notification service, token-based (ES256 JWT), over HTTP/2."""

    type: Literal["apns"]
    key_id: str = Field(pattern=r"^[A-Z0-9]{10}$")
    team_id: str = Field(pattern=r"^[A-Z0-9]{10}$")
    signing_private_key: str = Field(min_length=1)  # the .p8 file's PEM text
    topic: str = Field(pattern=r"^[A-Za-z0-9.-]{1,200}$")  # the app's bundle id
    push_type: Literal["alert", "background"] = "alert"
    base_url: str = "https://api.push.apple.com"  # sandbox: https://api.sandbox.push.apple.com
    # Here: streams in flight per worker (HTTP/2 multiplexes them over few connections).

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, base_only=True)

    @field_validator("signing_private_key")
    @classmethod
    def _key(cls, value: str) -> str:
        try:
            key = load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("signing_private_key must be the PEM text of the .p8 key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("signing_private_key must be an ECDSA P-256 key")
        return value

    def destinations(self) -> list[tuple[str, str]]:
        return [("base_url", self.base_url)]


ExtraProviderSettings = (
    SesSettings
    | SendgridSettings
    | MailgunSettings
    | PostmarkSettings
    | VonageSettings
    | PlivoSettings
    | ApnsSettings
)
EXTRA_SETTINGS_TYPES = (
    SesSettings,
    SendgridSettings,
    MailgunSettings,
    PostmarkSettings,
    VonageSettings,
    PlivoSettings,
    ApnsSettings,
)
EXTRA_SETTINGS_BY_TYPE: dict[str, type[ExtraProviderSettings]] = {
    "ses": SesSettings,
    "sendgrid": SendgridSettings,
    "mailgun": MailgunSettings,
    "postmark": PostmarkSettings,
    "vonage": VonageSettings,
    "plivo": PlivoSettings,
    "apns": ApnsSettings,
}
EXTRA_TYPES_BY_KIND: dict[str, tuple[str, ...]] = {
    "email": ("ses", "sendgrid", "mailgun", "postmark"),
    "sms": ("vonage", "plivo"),
    "push": ("apns",),
}
