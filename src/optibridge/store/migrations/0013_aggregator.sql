-- The SMS aggregator flow (docs/flows/sms-aggregator.md, reference §12): per SMS channel, the
-- Optimove side's base URL and secrets, the batches Optimove transmitted, and which delivery
-- reports went back.

-- One row per channel in aggregator mode. `secrets` is Fernet-encrypted JSON (app_api_key,
-- shared_secret, aggregator_key) like every other tenant secret; `key_hash` is the SHA-256 of the
-- aggregator key Optimove sends back as X-API-Key, so a request is matched without decrypting.
CREATE TABLE aggregator_channels (
    tenant_id        text NOT NULL,
    channel_id       integer NOT NULL,
    base_url         text NOT NULL CHECK (base_url ~ '^https?://'),
    secrets          bytea NOT NULL,
    key_hash         bytea NOT NULL,
    receipt_wait_s   integer NOT NULL DEFAULT 0 CHECK (receipt_wait_s BETWEEN 0 AND 86400),
    handshake_url    text,            -- as registered, its token masked
    -- SHA-256 of the exact URL registered (token included): a rotated token or a new public_url
    -- makes it differ from the URL we would register now, and the handshake runs again.
    handshake_hash   bytea,
    handshake_at     timestamptz,
    handshake_error  text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, optimove_channel_id)
        ON DELETE CASCADE ON UPDATE CASCADE
);

-- Every batch received, once: the primary key makes a repeated batch a no-op; a request id seen
-- under another batch id is a repeat too (the unique index).
CREATE TABLE aggregator_batches (
    tenant_id    text NOT NULL,
    channel_id   integer NOT NULL,
    batch_id     text NOT NULL CHECK (length(batch_id) BETWEEN 1 AND 200),
    request_id   text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 200),
    campaign_id  bigint NOT NULL,
    sender_id    text,
    metadata     jsonb NOT NULL,
    recipients   integer NOT NULL,
    accepted     integer NOT NULL,
    notes        text[] NOT NULL DEFAULT '{}',
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id, batch_id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES aggregator_channels (tenant_id, channel_id)
        ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE UNIQUE INDEX aggregator_batches_request ON aggregator_batches (tenant_id, channel_id, request_id);
-- Batches are kept `KEEP_DAYS` (idempotency against late retries), then pruned with their report rows.
CREATE INDEX aggregator_batches_received ON aggregator_batches USING brin (received_at);

-- One row per message an aggregator batch created: what to echo in its delivery report, and
-- whether that report went (reported_at) or when to try again. No foreign key to messages (their
-- table has none, for ingest speed); the report job skips rows whose message is gone.
CREATE TABLE aggregator_messages (
    message_id      uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    channel_id      integer NOT NULL,
    batch_id        text NOT NULL,
    mobile_number   text NOT NULL,
    report_status   text,
    attempts        integer NOT NULL DEFAULT 0,
    next_try_at     timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    reported_at     timestamptz,
    FOREIGN KEY (tenant_id, channel_id, batch_id)
        REFERENCES aggregator_batches (tenant_id, channel_id, batch_id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX aggregator_messages_unreported ON aggregator_messages (tenant_id, channel_id, next_try_at)
    WHERE reported_at IS NULL;
-- A batch's report rows: the prune's "anything left to report?" and the cascade from a batch.
CREATE INDEX aggregator_messages_batch ON aggregator_messages (tenant_id, channel_id, batch_id);
