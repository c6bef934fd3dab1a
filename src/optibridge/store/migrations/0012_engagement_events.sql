-- Signed engagement events (docs/flows/engagement-events.md): a tenant may report per-customer
-- interactions to Optimove's saveEvent endpoint instead of, or beside, the classic
-- UpdateCampaignMetrics/UpdateCampaignInteractions calls.

-- One row per tenant that chose a reporting mode other than the default (no row: 'classic').
-- The engagement token signs every request (HMAC key): encrypted like the other tenant secrets.
CREATE TABLE tenant_engagement (
    tenant_id        text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    mode             text NOT NULL DEFAULT 'classic' CHECK (mode IN ('classic', 'events', 'both')),
    metric_tenant_id text,
    base_url         text,
    token            bytea,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (mode = 'classic' OR (metric_tenant_id IS NOT NULL AND token IS NOT NULL))
);

-- Each (message, metric) handled as an event exactly once: 'sent' once Optimove answered 2xx,
-- 'too_old' when it was past the 7-day limit before it could go (counted, never retried).
-- Separate from reported_interactions: in 'both' mode the two paths progress independently.
CREATE TABLE engagement_events (
    message_id   uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    event_id     smallint NOT NULL,
    tenant_id    text NOT NULL,
    channel_id   integer NOT NULL,
    campaign_id  bigint NOT NULL,
    status       text NOT NULL CHECK (status IN ('sent', 'too_old')),
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (message_id, event_id)
);
CREATE INDEX engagement_events_campaign ON engagement_events (tenant_id, channel_id, campaign_id);
