"""Counters and histograms of what this process did (Prometheus), with the hooks that feed them.

Bottom layer: the dispatcher, the Optimove client and the reporting code count here without
loading the web framework; `optibridge.web.metrics` exposes these beside the database gauges.

    optibridge_send_delay_seconds{channel}               sent time minus scheduled time (histogram)
    optibridge_provider_sends_total{provider}            messages a provider accepted
    optibridge_provider_errors_total{tenant,provider,reason}  provider errors, by outcome class
    optibridge_optimove_requests_total{call,status}      Optimove API requests by call and answer
    optibridge_optimove_request_seconds{call}            their duration (histogram)

With `PROMETHEUS_MULTIPROC_DIR` set, counters of every process on the machine are summed at scrape
time (prometheus-client's multiprocess mode); see docs/observability.md.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess

MAX_LABEL = 64

SEND_DELAY = Histogram(
    "optibridge_send_delay_seconds",
    "Seconds between a message's scheduled time and the provider accepting it",
    ["channel"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600),
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


def observe_send_delay(channel: str, scheduled_at: datetime, sent_at: datetime | None = None) -> None:
    """The dispatcher calls this once per message a provider accepted. `channel` is the channel
    kind (email, sms, push, webhook). Early sends count as 0."""
    sent = sent_at or datetime.now(UTC)
    SEND_DELAY.labels(_label(channel)).observe(max(0.0, (sent - scheduled_at).total_seconds()))


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
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


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
