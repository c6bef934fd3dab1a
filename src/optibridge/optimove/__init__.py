"""Async client for the Optimove REST API ("current" v3), as a channel partner uses it.

The public surface is re-exported here; see `client.OptimoveClient`.
"""

from optibridge.optimove.auth import ApiKeyAuth, Auth, LoginAuth
from optibridge.optimove.client import OptimoveClient
from optibridge.optimove.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock
from optibridge.optimove.config import OptimoveClientConfig, Timeouts
from optibridge.optimove.errors import (
    OptimoveAuthError,
    OptimoveBadRequestError,
    OptimoveClientError,
    OptimoveError,
    OptimoveHTTPError,
    OptimoveRateLimitedError,
    OptimoveRequestError,
    OptimoveResponseError,
    OptimoveServerError,
    OptimoveTimeoutError,
    OptimoveTransportError,
)
from optibridge.optimove.models import (
    CampaignDetails,
    CampaignMetric,
    CanceledCustomer,
    ChannelApp,
    ChannelTemplate,
    EventListener,
    EventType,
    ExecutionChannel,
    MetricID,
    SendDetail,
    SendDetailsPage,
)
from optibridge.optimove.ratelimit import RateLimit, RateLimiterRegistry
from optibridge.optimove.retry import NO_RETRY, RetryPolicy
from optibridge.optimove.timefmt import (
    format_optimove_date,
    format_optimove_time,
    parse_optimove_date,
    parse_optimove_time,
)

__all__ = [
    "NO_RETRY",
    "SYSTEM_CLOCK",
    "ApiKeyAuth",
    "Auth",
    "CampaignDetails",
    "CampaignMetric",
    "CanceledCustomer",
    "ChannelApp",
    "ChannelTemplate",
    "Clock",
    "EventListener",
    "EventType",
    "ExecutionChannel",
    "LoginAuth",
    "ManualClock",
    "MetricID",
    "OptimoveAuthError",
    "OptimoveBadRequestError",
    "OptimoveClient",
    "OptimoveClientConfig",
    "OptimoveClientError",
    "OptimoveError",
    "OptimoveHTTPError",
    "OptimoveRateLimitedError",
    "OptimoveRequestError",
    "OptimoveResponseError",
    "OptimoveServerError",
    "OptimoveTimeoutError",
    "OptimoveTransportError",
    "RateLimit",
    "RateLimiterRegistry",
    "RetryPolicy",
    "SendDetail",
    "SendDetailsPage",
    "SystemClock",
    "Timeouts",
    "format_optimove_date",
    "format_optimove_time",
    "parse_optimove_date",
    "parse_optimove_time",
]
