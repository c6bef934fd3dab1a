-- Retention follow-ups (docs/scaling.md "Retention"): what must outlive a campaign's message rows,
-- and the indexes that let the retention job prune the other tables that grew with every campaign.

-- Who a purged message was sent to, for its unsubscribe link only: a one-click unsubscribe must
-- keep working at least 30 days after sending (CAN-SPAM; Gmail/Yahoo bulk-sender rules) while the
-- message row goes about 10 days after. Written by the purge batch that deletes the message (sent
-- messages only), pruned `unsubscribe_keep_days` after `sent_at`, cleared by `customers forget`.
-- No channel name: the unsubscribe looks the channel up when it is used (it may be renamed).
CREATE TABLE unsubscribe_keys (
    message_id   uuid PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel_id   integer NOT NULL,
    customer_id  text NOT NULL,
    address      text,
    sent_at      timestamptz NOT NULL
);
-- Rows arrive roughly in send order (campaigns are purged oldest first): a BRIN index finds the
-- expired ones for a few bytes per thousand rows instead of a B-tree's ~30 bytes per row.
CREATE INDEX unsubscribe_keys_sent ON unsubscribe_keys USING brin (sent_at);

-- Notifications not tied to a kept campaign are pruned by age (append-only, so BRIN suffices).
CREATE INDEX notifications_received ON notifications USING brin (received_at);
