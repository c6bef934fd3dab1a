"""Counters and histograms of what this process did (Prometheus), with the hooks that feed them.

Bottom layer: the dispatcher, the Optimove client and the reporting code count here without
loading the web framework; `optibridge.web.metrics` exposes these beside the database gauges.

    optibridge_send_lateness_seconds{channel}            sent time minus due time (send_at), histogram
    optibridge_worker_processes                          live worker processes (gauge, summed)
    optibridge_provider_sends_total{provider}            messages a provider accepted
    optibridge_provider_errors_total{tenant,provider,reason}  provider errors, by outcome class
    optibridge_optimove_requests_total{call,status}      Optimove API requests by call and answer
    optibridge_optimove_request_seconds{call}            their duration (histogram)

With `PROMETHEUS_MULTIPROC_DIR` set, counters of every process on the machine are summed at scrape
time (prometheus-client's multiprocess mode). `serve --workers N` turns that on by itself
(`enable_multiprocess`, a fresh folder per serve process); a standalone worker serves its own
counters on `metrics_port`. See docs/observability.md.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values

MAX_LABEL = 64

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Lateness: what a sender promises is "at the due time", so the fine buckets are below a few
# seconds (a healthy channel: p99 under 1 s); the coarse ones show an overloaded channel's backlog
# up to a day (beyond that a message has long expired by its channel's max lateness).
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
SEND_LATENESS = Histogram(
    "optibridge_send_lateness_seconds",
    "Seconds between a message's due time (send_at) and the provider accepting it, by channel kind",
    ["channel"],
    buckets=LATENESS_BUCKETS,
)
# One per live worker process; in multiprocess mode the scrape sums the live ones ("livesum":
# the supervisor marks a child's files dead when it exits).
WORKER_PROCESSES = Gauge(
    "optibridge_worker_processes",
    "Worker processes running (summed over the processes of this machine)",
    multiprocess_mode="livesum",
)
PROVIDER_SENDS = Counter("optibridge_provider_sends", "Messages accepted by a provider", ["provider"])
PROVIDER_ERRORS = Counter(
    "optibridge_provider_errors",
    "Provider errors by tenant, provider and outcome class (throttled, transient, permanent, ...)",
    # The tenant: provider names are chosen by each tenant's config (and often the same, "twilio"),
    # and a tenant-scoped dashboard viewer must see only its own tenant's errors.
    ["tenant", "provider", "reason"],
)
OPTIMOVE_REQUESTS = Counter(
    "optibridge_optimove_requests",
    "Optimove API requests by call and answer (HTTP status, or timeout/transport)",
    ["call", "status"],
)
OPTIMOVE_SECONDS = Histogram(
    "optibridge_optimove_request_seconds",
    "Duration of one Optimove API request (one attempt)",
    ["call"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def _label(value: object) -> str:
    """Label values are bounded: a free-text reason must never mint a new series per message."""
    text = str(value).strip() or "unknown"
    return text[:MAX_LABEL]


# -- hooks -------------------------------------------------------------------------------------


def observe_send_delay(channel: str, due_at: datetime, sent_at: datetime | None = None) -> None:
    """The dispatcher calls this once per message a provider accepted, with its due time
    (send_at). `channel` is the channel kind (email, sms, push, webhook). Early sends count as 0."""
    sent = sent_at or datetime.now(UTC)
    SEND_LATENESS.labels(_label(channel)).observe(max(0.0, (sent - due_at).total_seconds()))


observe_lateness = observe_send_delay


def worker_running(up: bool) -> None:
    """A worker loop calls this when it starts (True) and stops (False)."""
    WORKER_PROCESSES.set(1 if up else 0)


def count_sent(provider: str, n: int = 1) -> None:
    """The dispatcher calls this with how many messages a provider accepted (e.g. per slice)."""
    if n > 0:
        PROVIDER_SENDS.labels(_label(provider)).inc(n)


def count_provider_error(provider: str, reason: str, n: int = 1, *, tenant: str = "") -> None:
    """The dispatcher calls this per failed provider call, with the channel's tenant. `reason`
    must be a small fixed set (the classification outcome: throttled, transient, permanent,
    timeout), never the provider's text."""
    if n > 0:
        PROVIDER_ERRORS.labels(_label(tenant), _label(provider), _label(reason.lower())).inc(n)


def record_optimove_request(call: str, status: int | str, seconds: float) -> None:
    """The Optimove client calls this once per HTTP attempt: `call` is the API call name
    (e.g. GetCustomerSendDetailsByChannel), `status` the HTTP status or 'timeout' / 'transport'."""
    OPTIMOVE_REQUESTS.labels(_label(call), _label(status)).inc()
    OPTIMOVE_SECONDS.labels(_label(call)).observe(max(0.0, seconds))


# -- reading the counters back (the dashboard) ----------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def enable_multiprocess(path: str) -> None:
    """Keep this process's counters in files under `path` from now on, and have child processes
    (which inherit the environment) do the same, so one scrape sums them all.

    prometheus-client picks its value store when it is imported, which the CLI has done by the
    time `serve` knows it will start children; every labelled series (all of ours) is created on
    first use, so switching the store class now, before any series exists, puts them all in files.
    """
    os.environ[MULTIPROC_ENV] = path
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def mark_process_dead(pid: int) -> None:
    """A supervisor calls this when a child exits: its live gauges stop counting."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def process_registry() -> CollectorRegistry:
    """The counters to expose: this process's, or every process's in multiprocess mode."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def provider_errors_by_tenant(
    registry: CollectorRegistry | None = None, *, tenant: str | None = None
) -> dict[tuple[str, str, str], float]:
    """(tenant, provider, reason) -> errors counted so far, as /metrics would show them; only
    `tenant`'s when given (what a tenant-scoped viewer may see), every tenant's when None."""
    out: dict[tuple[str, str, str], float] = {}
    for metric in (registry or process_registry()).collect():
        if metric.name != "optibridge_provider_errors":
            continue
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            owner = sample.labels.get("tenant", "")
            if tenant is not None and owner != tenant:
                continue
            key = (owner, sample.labels.get("provider", ""), sample.labels.get("reason", ""))
            out[key] = out.get(key, 0.0) + sample.value
    return out


def provider_error_totals(
    registry: CollectorRegistry | None = None, *, tenant: str | None = None
) -> dict[tuple[str, str], float]:
    """(provider, reason) -> errors counted so far, summed over tenants (or only `tenant`'s)."""
    out: dict[tuple[str, str], float] = {}
    for (_, provider, reason), n in provider_errors_by_tenant(registry, tenant=tenant).items():
        out[(provider, reason)] = out.get((provider, reason), 0.0) + n
    return out
