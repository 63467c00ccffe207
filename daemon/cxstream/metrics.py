"""Prometheus metrics, in a registry of our own so nothing is process-global."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A journal commit is one fsync: sub-millisecond on a good SSD, tens of ms on a busy disk.
_COMMIT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# Event-loop lag: fine below 100 ms, where "is the loop keeping up" is decided.
_LAG = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)
_DURATION = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.webhooks = Counter("cxstream_webhooks", "Webhooks by outcome", ["outcome"], registry=r)
        self.recordings = Counter(
            "cxstream_recordings", "Recordings by outcome", ["outcome"], registry=r
        )
        self.bytes = Counter("cxstream_stream_bytes", "Audio bytes received", registry=r)
        self.requests = Counter(
            "cxstream_stream_requests", "Stream GETs by status", ["status"], registry=r
        )
        self.stalls = Counter("cxstream_stream_stalls", "Streams the watchdog cut", registry=r)
        self.retries = Counter(
            "cxstream_stream_retries", "Retries by reason", ["reason"], registry=r
        )
        self.ttfb = Histogram(
            "cxstream_ttfb_seconds", "First audio byte latency", buckets=_LATENCY, registry=r
        )
        self.duration = Histogram(
            "cxstream_recording_seconds", "Recording fetch time", buckets=_DURATION, registry=r
        )
        self.active = Gauge("cxstream_active_streams", "Streams in flight", registry=r)
        self.queued = Gauge("cxstream_jobs_queued", "Jobs waiting in the journal", registry=r)
        self.archive = Counter(
            "cxstream_archive_calls", "Archive callbacks by outcome", ["outcome"], registry=r
        )
        self.backlog = Gauge(
            "cxstream_archive_backlog", "Announcements not yet delivered", registry=r
        )
        self.connections = Gauge(
            "cxstream_connections_open", "Open connections by listener", ["listener"], registry=r
        )
        self.connections_dropped = Counter(
            "cxstream_connections_dropped",
            "Connections closed by the daemon: over a cap or past a timeout",
            ["listener", "reason"],
            registry=r,
        )
        self.free_bytes = Gauge(
            "cxstream_storage_free_bytes", "Free bytes where we write", ["path"], registry=r
        )
        self.storage_paused = Gauge(
            "cxstream_storage_paused", "1 while fetching waits for disk space", registry=r
        )
        self.ratelimit_wait = Counter(
            "cxstream_ratelimit_wait_seconds",
            "Seconds API calls waited on the client-side rate limit",
            registry=r,
        )
        self.token_refreshes = Counter(
            "cxstream_token_refreshes", "OAuth tokens obtained", registry=r
        )
        self.interrupted = Counter(
            "cxstream_jobs_interrupted",
            "Jobs handed back by an outage of ours (journal, disk)",
            ["reason"],
            registry=r,
        )
        self.oldest_queued = Gauge(
            "cxstream_jobs_oldest_queued_age_seconds",
            "How long the longest-waiting queued job has waited (0 when none)",
            registry=r,
        )
        self.webhook_latency = Histogram(
            "cxstream_webhook_duration_seconds",
            "Webhook handling time, from request to answer, every outcome",
            buckets=_LATENCY,
            registry=r,
        )
        self.journal_commit = Histogram(
            "cxstream_journal_commit_seconds",
            "Journal COMMIT time (fsync included) of transactions that wrote",
            buckets=_COMMIT,
            registry=r,
        )

        self.loop_lag = Histogram(
            "cxstream_event_loop_lag_seconds",
            "How late a 100 ms timer fires on the event loop",
            buckets=_LAG,
            registry=r,
        )

    def timed(self) -> Middleware:
        """A middleware observing every webhook request's handling time."""
        histogram = self.webhook_latency

        @web.middleware
        async def timing(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                return await handler(request)
            finally:
                histogram.observe(time.perf_counter() - started)

        return timing
