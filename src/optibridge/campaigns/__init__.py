"""Campaign progress and the operator actions pause/resume/cancel (admin API, dashboard, CLI)."""

from optibridge.campaigns.actions import ACTIONS, OPERATOR_CANCEL_REASON, Action, act, decide
from optibridge.campaigns.progress import (
    CAMPAIGN_STATUSES,
    RATE_WINDOW_S,
    Campaign,
    CampaignDetail,
    CampaignFilter,
    CampaignKey,
    Progress,
    compute_progress,
    failure_reasons,
    get_campaign,
    list_campaigns,
)

__all__ = [
    "ACTIONS",
    "CAMPAIGN_STATUSES",
    "OPERATOR_CANCEL_REASON",
    "RATE_WINDOW_S",
    "Action",
    "Campaign",
    "CampaignDetail",
    "CampaignFilter",
    "CampaignKey",
    "Progress",
    "act",
    "compute_progress",
    "decide",
    "failure_reasons",
    "get_campaign",
    "list_campaigns",
]
