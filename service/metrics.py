"""Prometheus metrics of one serving process: request latency per route, and the index's state.

Each process has its own registry; with several workers, scrape each (or run one worker per
container), since a scrape through a shared port reaches one worker at random.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

#: Latency buckets in seconds: typeahead cares about the 5-100 ms range.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)


class _IndexCollector:
    """Reads the live index's state at scrape time."""

    def __init__(self, live) -> None:
        self.live = live

    def collect(self):
        live = self.live
        counts = live.index.counts
        g = GaugeMetricFamily("qa_search_index_threads", "Threads in the served index.")
        g.add_metric([], counts["threads"])
        yield g
        g = GaugeMetricFamily("qa_search_index_vectors", "Vectors in the served index.", labels=["kind"])
        g.add_metric(["question"], counts["question_vectors"])
        g.add_metric(["answer"], counts["answer_vectors"])
        yield g
        g = GaugeMetricFamily("qa_search_index_generation", "Generation served (-1: a single snapshot).")
        g.add_metric([], -1 if live.generation is None else live.generation)
        yield g
        g = GaugeMetricFamily("qa_search_live_writes", "Write-log entries applied on top of the generation.")
        g.add_metric([], live.applied)
        yield g
        g = GaugeMetricFamily("qa_search_generation_loading",
                              "Generation being loaded in the background (-1: none).")
        loading = live.loading_generation
        g.add_metric([], -1 if loading is None else loading)
        yield g
        g = GaugeMetricFamily("qa_search_generation_load_failing",
                              "1 while the newest generation could not be loaded and an older one serves.")
        g.add_metric([], 0 if live.load_error is None else 1)
        yield g
        c = CounterMetricFamily("qa_search_generation_load_failures",
                                "Generation loads that failed (each tried again later).")
        c.add_metric([], live.load_failures)
        yield c


class _CacheCollector:
    """The query cache's counters, read at scrape time. The cache is shared by every caller, so
    a count read before and after one search says whether anyone searched that text before:
    they are shown only to a scrape with the metrics key."""

    def __init__(self, live) -> None:
        self.live = live

    def collect(self):
        cache = self.live.cache
        c = CounterMetricFamily("qa_search_query_cache", "Query-embedding cache lookups.", labels=["result"])
        c.add_metric(["hit"], cache.hits)
        c.add_metric(["miss"], cache.misses)
        yield c
        g = GaugeMetricFamily("qa_search_query_cache_hit_ratio", "Hits over lookups since start.")
        g.add_metric([], cache.hit_rate)
        yield g


class Metrics:
    """The registry and instruments of one app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        #: What depends on other callers' query text, rendered only when asked for.
        self.private = CollectorRegistry()
        self.latency = Histogram(
            "qa_search_request_duration_seconds", "Request latency by route template.",
            ["route", "method", "status"], buckets=BUCKETS, registry=self.registry,
        )

    def track(self, live) -> None:
        self.registry.register(_IndexCollector(live))
        self.private.register(_CacheCollector(live))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.latency.labels(route, method, str(status)).observe(seconds)

    def render(self, private: bool = False) -> bytes:
        """The metrics page; with ``private``, the query cache's counters too."""
        page = generate_latest(self.registry)
        return page + generate_latest(self.private) if private else page
