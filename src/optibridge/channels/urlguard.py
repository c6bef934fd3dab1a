"""Keep outbound connections away from internal networks (SSRF): the channels' view of
`optibridge.core.outbound`, where the policy lives (the Optimove client uses it too).
"""

from __future__ import annotations

from optibridge.core.outbound import (
    DestinationRefusedError,
    GuardedResolver,
    OutboundPolicy,
    check_address,
    check_url,
    numeric_host,
)

__all__ = [
    "DestinationRefusedError",
    "GuardedResolver",
    "OutboundPolicy",
    "check_address",
    "check_url",
    "numeric_host",
]
