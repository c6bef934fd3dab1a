-- Flow 6: what recipients and providers tell us after sending (events, suppressions), and what we
-- tell Optimove about it (metric totals, interaction lists, channel preferences) on a schedule.

-- One row per distinct event. The message's tenant, channel, campaign, template and customer are
-- copied in at insert time so reports group events without touching `messages`. `dedupe_key` is
-- unique per tenant: providers deliver at least once and tracking hits repeat, and a repeat must
-- insert nothing ("open:<message>", "click:<message>:<url hash>", "twilio:<sid>:<status>",
-- "generic:<event id>", "send:<message>:bounced").
CREATE TABLE message_events (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL,
    message_id   uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    channel_id   integer NOT NULL,
    campaign_id  bigint NOT NULL,
    template_id  integer NOT NULL,
    customer_id  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN
                 ('delivered', 'opened', 'clicked', 'unsubscribed', 'bounced', 'complained', 'failed')),
    source       text NOT NULL CHECK (source IN ('tracking', 'twilio', 'generic', 'send')),
    dedupe_key   text NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 400),
    -- Likely a machine (mail scanner, link preview): kept for analysis, never counted.
    suspect      boolean NOT NULL DEFAULT false,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    url          text,
    reason       text,
    UNIQUE (tenant_id, dedupe_key)
);
CREATE INDEX message_events_campaign ON message_events (tenant_id, channel_id, campaign_id, message_id);
CREATE INDEX message_events_message ON message_events (message_id);

-- Never send again to these, per tenant and channel. `kind` says whether `value` is a (normalized)
-- address or a customer id.
CREATE TABLE suppressions (
    tenant_id     text NOT NULL,
    channel_name  text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('address', 'customer')),
    value         text NOT NULL CHECK (length(value) BETWEEN 1 AND 1000),
    reason        text NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'manual')),
    source        text NOT NULL DEFAULT 'feedback',
    message_id    uuid,
    note          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_name, kind, value),
    FOREIGN KEY (tenant_id, channel_name) REFERENCES channels (tenant_id, name) ON DELETE CASCADE
);
CREATE INDEX suppressions_recent ON suppressions (tenant_id, created_at DESC);

-- Opt-outs to tell Optimove (SetCustomerChannelPreference), written with the event that caused
-- them and sent in batches by a periodic job. One row per customer, channel and mode.
CREATE TABLE preference_outbox (
    id                  bigserial PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel_id          integer NOT NULL,
    customer_id         text NOT NULL,
    communication_mode  integer NOT NULL,
    reason              text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    last_error          text,
    UNIQUE (tenant_id, channel_id, customer_id, communication_mode)
);
CREATE INDEX preference_outbox_unsent ON preference_outbox (tenant_id, channel_id, communication_mode)
    WHERE sent_at IS NULL;

-- The reporting schedule of a campaign on a channel: a push as soon as sending is over, then every
-- few hours for the window (7 days), then a final push. Rows are leased (lease_until) by the worker
-- pushing them, so however many workers run, one pushes.
CREATE TABLE report_schedules (
    tenant_id      text NOT NULL,
    channel_id     integer NOT NULL,
    campaign_id    bigint NOT NULL,
    finished_at    timestamptz NOT NULL,
    final_at       timestamptz NOT NULL,
    next_push_at   timestamptz,
    state          text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'done', 'abandoned')),
    pushes         integer NOT NULL DEFAULT 0,
    failures       integer NOT NULL DEFAULT 0,
    last_push_at   timestamptz,
    last_error     text,
    lease_until    timestamptz,
    leased_by      text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id, campaign_id),
    FOREIGN KEY (tenant_id, channel_id, campaign_id)
        REFERENCES campaigns (tenant_id, channel_id, campaign_id) ON DELETE CASCADE
);
CREATE INDEX report_schedules_due ON report_schedules (next_push_at) WHERE state = 'active';

-- The metric totals Optimove last accepted, per template (what `reports show` prints as "sent").
CREATE TABLE reported_metrics (
    tenant_id     text NOT NULL,
    channel_id    integer NOT NULL,
    campaign_id   bigint NOT NULL,
    template_id   integer NOT NULL,
    metric_id     integer NOT NULL,
    value         bigint NOT NULL,
    pushed_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, campaign_id, template_id, metric_id),
    FOREIGN KEY (tenant_id, channel_id, campaign_id)
        REFERENCES campaigns (tenant_id, channel_id, campaign_id) ON DELETE CASCADE
);

-- Which message (customer and template) Optimove has accepted in which interaction list: the
-- watermark of UpdateCampaignInteractions. Written only after Optimove answered 200, so a failed
-- push is sent again and an accepted one never is.
CREATE TABLE reported_interactions (
    message_id   uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    event_id     smallint NOT NULL,
    tenant_id    text NOT NULL,
    channel_id   integer NOT NULL,
    campaign_id  bigint NOT NULL,
    interaction_date date NOT NULL,
    pushed_at    timestamptz NOT NULL,
    PRIMARY KEY (message_id, event_id)
);
CREATE INDEX reported_interactions_campaign ON reported_interactions (tenant_id, channel_id, campaign_id);
