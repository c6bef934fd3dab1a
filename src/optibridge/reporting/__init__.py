"""Reporting to Optimove: metric totals and interaction lists per campaign, channel and template,
pushed on a 7-day schedule (UpdateCampaignMetrics, UpdateCampaignInteractions), and opt-outs
(SetCustomerChannelPreference). See docs/reporting.md.

For the job app: `tasks.register(app, settings)`; for the CLI: `cli.reports_app`.
"""
