-- Promotions for event-5 campaigns (docs/flows/promotions.md): per tenant, whether promotions are
-- activated and how; per campaign, how far the activation and the status report have come.

-- One row per tenant that has ever been configured; no row means disabled.
CREATE TABLE tenant_promotions (
    tenant_id        text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    enabled          boolean NOT NULL DEFAULT false,
    -- The tenant's promotion system; NULL: every targeted customer is activated ("accept all").
    webhook_url      text CHECK (webhook_url ~ '^https?://'),
    -- Fernet-encrypted JSON {"bearer_token": ...}, sent as Authorization: Bearer; never read back.
    secrets          bytea,
    batch_size       integer NOT NULL DEFAULT 10000 CHECK (batch_size BETWEEN 1 AND 10000),
    -- When the promotion system is still failing this long before ClearanceRequiredBy, stop
    -- asking it and do `on_deadline` for the customers not yet answered.
    deadline_margin_s integer NOT NULL DEFAULT 120 CHECK (deadline_margin_s >= 0),
    on_deadline      text NOT NULL DEFAULT 'report_false' CHECK (on_deadline IN ('report_false', 'leave')),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per event-5 campaign of an enabled tenant. `next_skip` is the GetProcessedCampaignCustomers
-- offset up to which every customer's status has been reported: a resumed job starts there, so a
-- finished batch is never activated or reported twice.
CREATE TABLE promotion_runs (
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    campaign_id      bigint NOT NULL,
    clearance_by     timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'done', 'deadline', 'failed')),
    next_skip        bigint NOT NULL DEFAULT 0,
    batches          integer NOT NULL DEFAULT 0,
    activated        bigint NOT NULL DEFAULT 0,
    refused          bigint NOT NULL DEFAULT 0,
    -- customers given Status false (report_false) or left unreported (leave) at the deadline
    past_deadline    bigint NOT NULL DEFAULT 0,
    promo_failures   integer NOT NULL DEFAULT 0,
    -- GetProcessedCampaignCustomers rows without a usable CustomerID (skipped, nothing to report)
    bad_rows         bigint NOT NULL DEFAULT 0,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, campaign_id)
);
