-- Admin API and dashboard: API keys.
--
-- A key is `obk_` + 256 random bits, shown once at creation; only its SHA-256 is stored, and a
-- request's key is found by that hash (an index lookup, never a comparison of secrets in Python).
-- `tenant_id` NULL: an admin key (every tenant); set: the key sees and changes only that tenant,
-- and goes with it when the tenant is removed. Revoked keys stay for the audit trail.
CREATE TABLE api_keys (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    tenant_id     text REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash      bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- The first characters of the key, to recognise it in listings (not enough to guess it).
    prefix        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
