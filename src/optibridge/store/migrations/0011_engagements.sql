-- Optimove's Scheduled Campaign Integration flow (event 14, docs/flows/event14.md): one row per
-- webhook call we accepted, keyed by the engagement, so a repeated POST finds its row and ingests
-- nothing twice. The customer files are read by a job; the row keeps what it needs to (re)start.
CREATE TABLE engagements (
    tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel_id          integer NOT NULL,
    engagement_id       bigint NOT NULL,
    campaign_id         bigint NOT NULL,
    bucket_name         text NOT NULL,
    customers_folder    text NOT NULL,
    metadata_path       text NOT NULL,
    -- The customer-supplied AES-256 key, encrypted with the service's secret box like other secrets.
    decryption_key      bytea,
    payload             jsonb NOT NULL,  -- the webhook body without DecryptionKey / ServiceAccount
    status              text NOT NULL DEFAULT 'received'
                        CHECK (status IN ('received', 'ingesting', 'ingested', 'failed', 'duplicate')),
    -- From the metadata file. TemplateID may exceed 2^53 (Optimove's SDK moved to json-bigint):
    -- kept exact as numeric here, whatever our catalog's id type.
    template_id         numeric(20, 0),
    template_name       text,
    scheduled_time      timestamptz,
    duration_days       integer,
    promotions          text[] NOT NULL DEFAULT '{}',
    tags                text[] NOT NULL DEFAULT '{}',
    number_of_files     integer,
    number_of_customers bigint,
    metadata            jsonb,
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id, engagement_id)
);
CREATE INDEX engagements_campaign ON engagements (tenant_id, campaign_id);

-- The reporting window of one campaign when its source says (event 14's Duration, in days);
-- NULL: the reporting settings' window (7 days by default).
ALTER TABLE campaigns ADD COLUMN report_window_days integer CHECK (report_window_days BETWEEN 1 AND 366);
