-- Retention (docs/scaling.md "Retention"): after a campaign's reporting window plus a margin, its
-- message rows, their events and interaction watermarks are folded into the two summary tables
-- below and deleted, so the database stops growing with every campaign sent and no customer's
-- address, attributes or rendered data outlive the window.

-- Set once every message row of the campaign has been summarized and deleted.
ALTER TABLE campaigns ADD COLUMN purged_at timestamptz;

-- How many messages a purged campaign had, per template and final state. Rows are added to in the
-- same transaction that deletes the messages they count, so a crash between batches counts each
-- message exactly once.
CREATE TABLE campaign_totals (
    tenant_id    text NOT NULL,
    channel_id   integer NOT NULL,
    campaign_id  bigint NOT NULL,
    template_id  integer NOT NULL,
    state        message_state NOT NULL,
    messages     bigint NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, campaign_id, template_id, state),
    FOREIGN KEY (tenant_id, channel_id, campaign_id)
        REFERENCES campaigns (tenant_id, channel_id, campaign_id) ON DELETE CASCADE
);

-- Tracking and receipt events of a purged campaign, per template, kind and UTC day.
-- `messages`: messages whose first counted (not machine) event of that kind fell on that day, the
-- unique-per-customer count reporting uses; `events`: every event row (repeats, machine hits
-- included); `suspect`: of those, machine hits.
CREATE TABLE campaign_event_days (
    tenant_id    text NOT NULL,
    channel_id   integer NOT NULL,
    campaign_id  bigint NOT NULL,
    template_id  integer NOT NULL,
    kind         text NOT NULL,
    day          date NOT NULL,
    messages     bigint NOT NULL,
    events       bigint NOT NULL,
    suspect      bigint NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, campaign_id, template_id, kind, day),
    FOREIGN KEY (tenant_id, channel_id, campaign_id)
        REFERENCES campaigns (tenant_id, channel_id, campaign_id) ON DELETE CASCADE
);

-- Finding the campaigns due for a purge without reading the purged ones again.
CREATE INDEX campaigns_unpurged ON campaigns (tenant_id, channel_id, campaign_id) WHERE purged_at IS NULL;
