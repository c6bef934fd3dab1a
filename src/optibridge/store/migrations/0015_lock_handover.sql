-- Wake the workers when a job lock frees and a job under that lock is waiting (docs/scaling.md,
-- "Lane hand-over").
--
-- A send job queues its lane's next job while it still holds the lane's lock (procrastinate `lock`:
-- a job is not fetched while another with its lock is `doing`). The insert notifies the workers at
-- once, but the job is not fetchable yet; when the running job ends, its lock frees with no
-- notification of its own, so the waiting job sat until some worker's next poll (up to 2 s): paced
-- campaigns went out late at every hand-over (bench/scale.py p99), and whichever worker polled
-- first took the lane, so workers that joined a running campaign could get no share (issue 14).
-- This trigger sends procrastinate's own "job_inserted" notification for the waiting job the
-- moment the lock frees (the finished job's row deleted, or its status changed from `doing`), so
-- every listening worker fetches at once and the fastest free one takes it.

CREATE FUNCTION optibridge_notify_lock_freed() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    waiting record;
    payload text;
BEGIN
    SELECT id, queue_name INTO waiting
      FROM procrastinate_jobs
     WHERE lock = OLD.lock AND status = 'todo'
       AND (scheduled_at IS NULL OR scheduled_at <= now())
     ORDER BY priority DESC, id
     LIMIT 1;
    IF FOUND THEN
        payload := json_build_object('type', 'job_inserted', 'job_id', waiting.id)::text;
        PERFORM pg_notify('procrastinate_queue_v1#' || waiting.queue_name, payload);
        PERFORM pg_notify('procrastinate_any_queue_v1', payload);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER optibridge_lock_freed_on_delete
    AFTER DELETE ON procrastinate_jobs
    FOR EACH ROW
    WHEN (OLD.status = 'doing' AND OLD.lock IS NOT NULL)
    EXECUTE FUNCTION optibridge_notify_lock_freed();

CREATE TRIGGER optibridge_lock_freed_on_update
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (OLD.status = 'doing' AND NEW.status <> 'doing' AND OLD.lock IS NOT NULL)
    EXECUTE FUNCTION optibridge_notify_lock_freed();
