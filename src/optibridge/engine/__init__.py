"""The job engine: procrastinate app, deferral, retries, heartbeat, stalled-job re-queue."""
