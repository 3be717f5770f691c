"""Prometheus metrics of inspected process trees (prometheus_client), sampled when scraped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .figures import Sample
from .run import DutyCycle
from .sample import Sampler

PROCESS_METRICS = (
    ("rss_kb", "rss_bytes", "Resident set size (smaps_rollup Rss)."),
    ("pss_kb", "pss_bytes", "Proportional set size (smaps_rollup Pss)."),
    ("uss_kb", "uss_bytes", "Unique set size: Private_Clean + Private_Dirty."),
    ("swap_kb", "swap_bytes", "Swapped-out anonymous memory."),
    ("shared_with_parent_kb", "shared_with_parent_bytes",
     "Resident pages mapping the same frame as the parent at the same address."),
    ("sibling_shared_kb", "sibling_shared_bytes",
     "Resident pages shared with other inspected processes but not with the parent at that address."),
    ("copied_kb", "copied_bytes",
     "Resident pages where the parent has a page but this process its own frame."),
    ("new_kb", "new_bytes", "Resident pages of this process where the parent has no page."),
    ("released_kb", "released_bytes",
     "Pages this process held at its start (fork, or first seen) and dropped, that its parent still has."),
    ("copied_by_child_kb", "copied_by_child_bytes",
     "Copied pages where the parent kept the original frame: this process wrote them."),
    ("copied_by_parent_kb", "copied_by_parent_bytes",
     "Copied pages where this process kept the original frame: the parent wrote them."),
    ("copied_identical_kb", "copied_identical_bytes",
     "Copied pages whose bytes equal the parent's page there (estimated from a sample when many)."),
)
TREE_METRICS = (
    ("rss_sum_kb", "tree_rss_sum_bytes", "Sum of RSS over the inspected processes."),
    ("pss_sum_kb", "tree_pss_sum_bytes", "Sum of PSS over the inspected processes."),
    ("unique_kb", "tree_unique_bytes", "Memory the tree really uses: each resident frame counted once."),
    ("parent_rss_kb", "tree_parent_rss_bytes", "RSS of the roots: the most copy-on-write can erode."),
)


class InspectCollector(Collector):
    """Samples the tree on scrape (at most as often as the duty cycle allows) and exposes gauges."""

    def __init__(self, sampler: Sampler, duty: DutyCycle, prefix: str = "cowscope") -> None:
        self.sampler = sampler
        self.duty = duty
        self.prefix = prefix
        self.last: Sample | None = None
        self.lock = threading.Lock()

    def current(self) -> Sample:
        """The sample to expose: a fresh one, or the last when the duty cycle says wait."""
        with self.lock:
            now = time.monotonic()
            if self.last is None or self.duty.allow(now):
                self.last = self.sampler.sample()
                self.duty.record(now, self.last.duration_s)
            else:
                self.duty.skip_reason(now)
            return self.last

    def collect(self) -> Iterator[Any]:
        """Prometheus collection."""
        s = self.current()
        p = self.prefix
        labels = ["pid", "ppid", "name"]
        for attr, name, doc in PROCESS_METRICS:
            g = GaugeMetricFamily(f"{p}_process_{name}", doc, labels=labels)
            for pf in s.processes:
                v = getattr(pf, attr)
                if v is not None:
                    g.add_metric([str(pf.pid), str(pf.ppid), pf.name], v * 1024)
            yield g
        for attr, name, doc in TREE_METRICS:
            v = getattr(s.totals, attr)
            if v is not None:
                g = GaugeMetricFamily(f"{p}_{name}", doc)
                g.add_metric([], v * 1024)
                yield g
        g = GaugeMetricFamily(f"{p}_tree_processes", "Processes read in the last sample.")
        g.add_metric([], len(s.processes))
        yield g
        g = GaugeMetricFamily(f"{p}_processes_missed", "Processes that could not be read in the last sample.")
        g.add_metric([], len(s.missed))
        yield g
        g = GaugeMetricFamily(f"{p}_sample_duration_seconds", "Time the last sample spent reading /proc.")
        g.add_metric([], s.duration_s)
        yield g
        g = GaugeMetricFamily(f"{p}_sample_timestamp_seconds", "When the exposed sample was taken.")
        g.add_metric([], s.ts)
        yield g
        c = CounterMetricFamily(f"{p}_samples_skipped", "Scrapes served from the previous sample because of "
                                "the duty-cycle limit.")
        c.add_metric([], self.duty.skipped)
        yield c
        g = GaugeMetricFamily(f"{p}_exact", "1 when page classes come from PFNs (root), 0 when estimated.")
        g.add_metric([], 1 if s.mode == "exact" else 0)
        yield g


def serve(sampler: Sampler, port: int, addr: str = "127.0.0.1", duty: DutyCycle | None = None,
          ) -> tuple[Any, threading.Thread, InspectCollector]:
    """Start the HTTP exporter in a thread; returns (server, thread, collector)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = InspectCollector(sampler, duty or DutyCycle(0.2))
    registry.register(collector)
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return server, thread, collector

