-- Every report push of a campaign on a channel, scheduled or on demand, with Optimove's answer:
-- the dashboard's push history (docs/dashboard.md). `reported_metrics` keeps only the latest
-- totals and `report_schedules` only the last error; this keeps each attempt. A campaign has about
-- 45 scheduled pushes in its 7 days (every 4 h) plus retries and on-demand ones; rows go with it.
CREATE TABLE report_pushes (
    id            bigserial PRIMARY KEY,
    tenant_id     text NOT NULL,
    channel_id    integer NOT NULL,
    campaign_id   bigint NOT NULL,
    pushed_at     timestamptz NOT NULL,
    trigger       text NOT NULL CHECK (trigger IN ('schedule', 'on demand')),
    accepted      boolean NOT NULL,
    metrics       integer NOT NULL DEFAULT 0,   -- metric values sent (totals per template)
    interactions  integer NOT NULL DEFAULT 0,   -- customers newly sent in interaction lists
    complete      boolean NOT NULL DEFAULT true, -- false: more interactions were left for the next push
    answer        text,                         -- our words for a refusal (never Optimove's body)
    FOREIGN KEY (tenant_id, channel_id, campaign_id)
        REFERENCES campaigns (tenant_id, channel_id, campaign_id) ON DELETE CASCADE
);
CREATE INDEX report_pushes_campaign ON report_pushes (tenant_id, channel_id, campaign_id, pushed_at DESC);
