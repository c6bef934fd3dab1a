"""Real servers that behave like the providers: for tests, benchmarks and demos.

`SmtpSink` is an SMTP server (aiosmtpd); `HttpSink` serves fake Twilio, FCM v1 (with its OAuth
token endpoint), generic JSON SMS/push APIs and a webhook receiver. Both record what they receive
and inject faults on demand. `python -m optibridge.sinks` runs both.
"""

from optibridge.sinks.http_sink import HttpSink, RecordedRequest
from optibridge.sinks.smtp_sink import ReceivedMail, SmtpSink

__all__ = ["HttpSink", "ReceivedMail", "RecordedRequest", "SmtpSink"]
