-- Optimove's request window is per API key (50 per 10 s) and logins are limited per credential
-- (1 per s), whatever the number of our processes and machines. Every process reserves its send
-- times here instead of in memory: one row per reserved request, kept only for one window.
-- `limiter` is a SHA-256 of the credential's limiter key, never the key itself.
CREATE TABLE optimove_rate_slots (
    limiter  bytea NOT NULL,
    slot_at  timestamptz NOT NULL
);
CREATE INDEX optimove_rate_slots_limiter ON optimove_rate_slots (limiter, slot_at);
