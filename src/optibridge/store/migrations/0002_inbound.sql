-- Inbound (flows 1-4): listener tokens, template and app catalog, notifications, campaigns,
-- contacts, and the per-message rows that delivery works from.

-- Channel behaviour that is not provider configuration: address attribute, time zones, quiet hours.
ALTER TABLE channels ADD COLUMN options jsonb NOT NULL DEFAULT '{}';

-- The secret part of a tenant's listener URLs. The token is kept encrypted (we must be able to
-- rebuild the URL we register with Optimove) and looked up by its SHA-256. After a rotation the
-- previous token keeps working until `valid_until`, so notifications in flight are not lost.
CREATE TABLE listener_tokens (
    token_hash   bytea PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token        bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    valid_until  timestamptz
);
CREATE UNIQUE INDEX listener_tokens_current ON listener_tokens (tenant_id) WHERE retired_at IS NULL;

CREATE TABLE templates (
    tenant_id     text NOT NULL,
    channel_name  text NOT NULL,
    template_id   integer NOT NULL CHECK (template_id > 0),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    subject       text,
    body          text NOT NULL,
    text_body     text,
    app_id        text,
    defaults      jsonb NOT NULL DEFAULT '{}',
    attributes    text[] NOT NULL DEFAULT '{}',
    version       integer NOT NULL DEFAULT 1,
    -- A deleted template stays as a tombstone until Optimove has been told.
    deleted_at    timestamptz,
    -- What Optimove was last told: the name pushed (NULL: not there, as far as we know).
    pushed_name   text,
    pushed_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_name, template_id),
    FOREIGN KEY (tenant_id, channel_name) REFERENCES channels (tenant_id, name) ON DELETE CASCADE
);

CREATE TABLE push_apps (
    tenant_id     text NOT NULL,
    channel_name  text NOT NULL,
    app_id        text NOT NULL CHECK (length(app_id) BETWEEN 1 AND 255),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    deleted_at    timestamptz,
    pushed_name   text,
    pushed_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_name, app_id),
    FOREIGN KEY (tenant_id, channel_name) REFERENCES channels (tenant_id, name) ON DELETE CASCADE
);

-- Every notification that reached a listener, as received: the audit trail of what Optimove said.
CREATE TABLE notifications (
    id            bigserial PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel_id    integer,
    event_type    integer NOT NULL,
    campaign_id   bigint,
    payload       jsonb NOT NULL,
    outcome       text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_campaign ON notifications (tenant_id, campaign_id);

-- One row per campaign and channel. Ingest resumes from `ingest_skip` after a crash.
CREATE TABLE campaigns (
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel_id       integer NOT NULL,
    campaign_id      bigint NOT NULL,
    channel_name     text NOT NULL,
    -- awaiting: known from a cancel or hold only, no "processed" event yet.
    status           text NOT NULL DEFAULT 'ingesting'
                     CHECK (status IN ('awaiting', 'ingesting', 'ingested', 'failed', 'canceled')),
    paused           boolean NOT NULL DEFAULT false,
    -- Event 4 arrived; nothing is sent until the cancel job has found out whom it concerns.
    cancel_pending   boolean NOT NULL DEFAULT false,
    attributes       text[] NOT NULL DEFAULT '{}',
    ingest_skip      bigint NOT NULL DEFAULT 0,
    ingest_pages     integer NOT NULL DEFAULT 0,
    customers        bigint NOT NULL DEFAULT 0,
    messages         bigint NOT NULL DEFAULT 0,
    no_address       bigint NOT NULL DEFAULT 0,
    error            text,
    first_event      integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    ingested_at      timestamptz,
    canceled_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id, campaign_id)
);

-- Event 5: a campaign on hold until its ClearanceRequiredBy time, whatever the channel.
CREATE TABLE campaign_holds (
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    campaign_id   bigint NOT NULL,
    hold_until    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, campaign_id)
);

-- Customers canceled out of a campaign that goes on for the others (GetCanceledCampaignCustomers).
CREATE TABLE campaign_cancellations (
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    campaign_id   bigint NOT NULL,
    customer_id   text NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, customer_id)
);

-- Addresses (and extra attributes) that the client keeps outside Optimove.
CREATE TABLE contacts (
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    customer_id   text NOT NULL,
    email         text,
    phone         text,
    device_token  text,
    attributes    jsonb NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);

CREATE TYPE message_state AS ENUM
    ('pending', 'claimed', 'sent', 'failed', 'suppressed', 'canceled', 'expired');

-- One row per (tenant, channel, campaign, customer, template). `id` is a UUIDv5 of that key, so a
-- re-read page or a repeated notification inserts nothing new, and the same id goes to the
-- provider (Message-ID, idempotency key) on every attempt.
CREATE TABLE messages (
    id                   uuid PRIMARY KEY,
    tenant_id            text NOT NULL,
    channel_id           integer NOT NULL,
    campaign_id          bigint NOT NULL,
    customer_id          text NOT NULL,
    template_id          integer NOT NULL,
    scheduled_at         timestamptz NOT NULL,
    send_at              timestamptz NOT NULL,
    address              text,
    attrs                jsonb NOT NULL DEFAULT '{}',
    state                message_state NOT NULL DEFAULT 'pending',
    reason               text,
    attempts             smallint NOT NULL DEFAULT 0,
    claimed_by           text,
    claimed_until        timestamptz,
    provider             text,
    provider_message_id  text,
    sent_at              timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- No foreign key to campaigns (or tenants): the per-row check halved ingest speed
-- (docs/benchmarks.md). Rows are only written under an existing campaign, and are deleted with it
-- explicitly (store.tenants.remove).
CREATE INDEX messages_due ON messages (tenant_id, channel_id, send_at) WHERE state = 'pending';
CREATE INDEX messages_claimed ON messages (tenant_id, channel_id) WHERE state = 'claimed';
CREATE INDEX messages_campaign ON messages (tenant_id, channel_id, campaign_id, state);
