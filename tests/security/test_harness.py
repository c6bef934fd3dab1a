"""The harness itself: the server answers, keys are scoped, and the watch notices a stuck server."""

from __future__ import annotations

import os
import signal
import time

from securitykit import Served, livez_watch


def test_keys_are_scoped_and_livez_answers(served: Served) -> None:
    assert served.request("GET", "/api/v1/tenants", key=served.admin_key).status == 200
    assert served.request("GET", "/api/v1/tenants/acme", key=served.acme_key).status == 200
    assert served.request("GET", "/api/v1/tenants/globex", key=served.acme_key).status in (403, 404)
    assert served.request("GET", "/api/v1/tenants/acme").status == 401
    assert served.livez_ms() < 1000
    assert served.rss_mb() > 10


def test_livez_watch_notices_a_stopped_server(served: Served) -> None:
    # SIGSTOP freezes the process as a blocked event loop would: the watch must report it.
    with livez_watch(served, timeout_s=0.5) as watch:
        time.sleep(0.3)
        os.kill(served.pid, signal.SIGSTOP)
        time.sleep(1.0)
        os.kill(served.pid, signal.SIGCONT)
        time.sleep(0.3)
    assert watch.failures or watch.max_ms >= 500
