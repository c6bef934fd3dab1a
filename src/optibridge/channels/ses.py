"""E-mail through Amazon SES API v2 (SendEmail), signed with AWS Signature Version 4.

POST {base_url}/v2/email/outbound-emails, JSON, as in botocore's sesv2 service model. The request
is signed by botocore's SigV4 signer (the maintained implementation, not ours). Our message id
rides as the message tag `optibridge_message_id`: SES copies tags into every event it publishes
(`mail.tags`), which is how an SNS notification finds its message.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import DEFAULT_HTTP_RETRY_AFTER, classify_http, http_summary
from optibridge.channels.http_transport import STRICT, HttpChannel
from optibridge.channels.provider_settings import SesSettings
from optibridge.core.outbound import OutboundPolicy

MESSAGE_TAG = "optibridge_message_id"
SEND_PATH = "/v2/email/outbound-emails"
_THROTTLED = frozenset({"TooManyRequestsException", "LimitExceededException"})
_REJECTED = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException"})


def ses_request(settings: SesSettings, message: OutboundMessage) -> dict[str, Any]:
    """The SendEmail request body (pure): simple content, our headers, the message tag."""
    sender = settings.from_address
    if settings.from_name:
        sender = f'"{settings.from_name}" <{settings.from_address}>'
    body: dict[str, Any] = {"Html": {"Data": message.body, "Charset": "UTF-8"}}
    if message.text_body:
        body["Text"] = {"Data": message.text_body, "Charset": "UTF-8"}
    simple: dict[str, Any] = {"Subject": {"Data": message.subject or "", "Charset": "UTF-8"}, "Body": body}
    if message.headers:
        simple["Headers"] = [{"Name": k, "Value": v} for k, v in message.headers.items()]
    request: dict[str, Any] = {
        "FromEmailAddress": sender,
        "Destination": {"ToAddresses": [message.to]},
        "Content": {"Simple": simple},
        "EmailTags": [{"Name": MESSAGE_TAG, "Value": message.message_id}],
    }
    if settings.configuration_set_name:
        request["ConfigurationSetName"] = settings.configuration_set_name
    return request


def classify_ses(status: int, headers: Any, body: bytes) -> SendResult:
    """SES names its error in x-amzn-ErrorType (and `__type`); the status is the fallback."""
    kind = (headers.get("x-amzn-ErrorType") or "").split(":", 1)[0]
    if not kind:
        try:
            kind = str(json.loads(body).get("__type", "")).rsplit("#", 1)[-1]
        except (ValueError, AttributeError):
            kind = ""
    reason = f"SES {kind or '?'} ({http_summary(status, body)})"[:200]
    if status == 429 or kind in _THROTTLED:
        return SendResult(Outcome.THROTTLED, retry_after=DEFAULT_HTTP_RETRY_AFTER, reason=reason)
    if kind in _REJECTED:
        return SendResult(Outcome.PERMANENT, reason=reason)
    generic = classify_http(status, headers, body)
    return SendResult(generic.outcome, retry_after=generic.retry_after, reason=reason)


class SesEmailProvider(HttpChannel):
    kind = "email"

    def __init__(self, settings: SesSettings, *, policy: OutboundPolicy = STRICT) -> None:
        super().__init__(settings, policy=policy)
        self.name = settings.name or "ses"
        self.settings = settings
        self.url = settings.effective_base_url + SEND_PATH
        self._signer = SigV4Auth(
            Credentials(settings.access_key_id, settings.aws_secret, settings.session_token),
            "ses",
            settings.region,
        )

    def signed_headers(self, body: bytes) -> dict[str, str]:
        """Content-Type plus botocore's SigV4 headers (X-Amz-Date, Authorization, token)."""
        request = AWSRequest(
            method="POST", url=self.url, data=body, headers={"Content-Type": "application/json"}
        )
        self._signer.add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(Outcome.PERMANENT, reason="no e-mail address", bounce=True)
        body = json.dumps(ses_request(self.settings, message), ensure_ascii=False).encode("utf-8")
        response = await self._request("POST", self.url, self.signed_headers(body), body)
        if isinstance(response, SendResult):
            return response
        status, headers, answer = response
        if 200 <= status < 300:
            try:
                found = json.loads(answer).get("MessageId")
            except (ValueError, AttributeError):
                found = None
            return SendResult(Outcome.SENT, provider_message_id=found if isinstance(found, str) else None)
        return classify_ses(status, headers, answer)
