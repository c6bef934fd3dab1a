-- A channel's version, bumped by every change to its row (options, provider settings, secrets),
-- whoever makes it: each worker keeps its channels built (providers open, rate limits) and reads
-- this one number per slice to know when to build one again (docs/delivery.md).
ALTER TABLE channels ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE FUNCTION optibridge_channel_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF ROW(NEW.*) IS DISTINCT FROM ROW(OLD.*) THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER channels_version BEFORE UPDATE ON channels
    FOR EACH ROW EXECUTE FUNCTION optibridge_channel_version();
