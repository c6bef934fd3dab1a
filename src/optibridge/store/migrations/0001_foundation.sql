-- Tenants (one per Optimove client), their channels, process-wide settings, engine heartbeat.

CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id            text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name          text NOT NULL DEFAULT '',
    api_base_url  text NOT NULL CHECK (api_base_url ~ '^https?://'),
    auth_kind     text NOT NULL CHECK (auth_kind IN ('api_key', 'login')),
    -- Fernet-encrypted JSON: {"api_key": ...} or {"username": ..., "password": ...}
    credentials   bytea NOT NULL,
    -- Where the tenant was defined: a config file's tenants are updated from it at each start.
    source        text NOT NULL DEFAULT 'cli' CHECK (source IN ('config', 'cli', 'api')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE channels (
    tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                 text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind                 text NOT NULL CHECK (kind IN ('email', 'sms', 'push', 'webhook')),
    optimove_channel_id  integer NOT NULL CHECK (optimove_channel_id > 0),
    -- Provider settings minus credentials, which live encrypted in `secrets`.
    settings             jsonb NOT NULL DEFAULT '{}',
    secrets              bytea,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name),
    UNIQUE (tenant_id, optimove_channel_id)
);

-- One row per run of the periodic heartbeat job: proves the job engine schedules and runs work,
-- and (by counting rows per period) that a periodic job runs once per period however many
-- workers are up. Old rows are pruned by the job itself.
CREATE TABLE engine_ticks (
    id          bigserial PRIMARY KEY,
    period      timestamptz NOT NULL,
    worker      text NOT NULL,
    ran_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX engine_ticks_period ON engine_ticks (period);
