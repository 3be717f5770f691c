"""Prometheus metrics of inspected process trees (prometheus_client), sampled when scraped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..report.plain import visible
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


#: Where the exporter's roots come from: called before each sample, it returns the root pids and
#: the `root` label of each (a name given with --pidfile NAME=FILE, else the pid), and problems.
Roots = Callable[[], tuple[list[int], dict[int, str], list[str]]]


class InspectCollector(Collector):
    """Samples the trees on scrape (at most as often as the duty cycle allows) and exposes gauges.

    Every metric carries a `root` label, so one exporter can serve several trees. A tree whose
    root cannot be read has no tree metrics at all (never zeros) and `cowscope_tree_up` 0.
    """

    def __init__(self, sampler: Sampler, duty: DutyCycle, prefix: str = "cowscope", roots: Roots | None = None) -> None:
        self.sampler = sampler
        self.duty = duty
        self.prefix = prefix
        self.roots = roots
        self.labels: dict[int, str] = {pid: str(pid) for pid in sampler.roots}
        self.problems: list[str] = []
        self.last: Sample | None = None
        self.lock = threading.Lock()

    def current(self) -> Sample:
        """The sample to expose: a fresh one, or the last when the duty cycle says wait."""
        with self.lock:
            now = time.monotonic()
            if self.last is None or self.duty.allow(now):
                if self.roots is not None:
                    self.sampler.roots, self.labels, self.problems = self.roots()
                self.last = self.sampler.sample()
                self.duty.record(now, self.last.duration_s)
            else:
                self.duty.skip_reason(now)
            return self.last

    def _root_label(self, s: Sample, pid: int) -> str:
        root = s.root_of.get(pid, pid)
        return self.labels.get(root, str(root))

    def collect(self) -> Iterator[Any]:
        """Prometheus collection."""
        s = self.current()
        yield from self._process_metrics(s)
        yield from self._tree_metrics(s)
        yield from self._exporter_metrics(s)

    def _process_metrics(self, s: Sample) -> Iterator[Any]:
        labels = ["root", "pid", "ppid", "name", "title"]
        for attr, name, doc in PROCESS_METRICS:
            g = GaugeMetricFamily(f"{self.prefix}_process_{name}", doc, labels=labels)
            for pf in s.processes:
                v = getattr(pf, attr)
                if v is not None:
                    g.add_metric([self._root_label(s, pf.pid), str(pf.pid), str(pf.ppid), visible(pf.name),
                                  visible(pf.title or "")], v * 1024)
            yield g

    def _tree_metrics(self, s: Sample) -> Iterator[Any]:
        """Per tree that was read; `tree_up` for every configured root (0: not read, no other tree metric)."""
        p = self.prefix
        for attr, name, doc in TREE_METRICS:
            g = GaugeMetricFamily(f"{p}_{name}", doc, labels=["root"])
            for root, tt in s.trees.items():
                v = getattr(tt, attr)
                if v is not None:
                    g.add_metric([self.labels.get(root, str(root))], v * 1024)
            yield g
        g = GaugeMetricFamily(f"{p}_tree_processes", "Processes read in the last sample.", labels=["root"])
        for root, tt in s.trees.items():
            g.add_metric([self.labels.get(root, str(root))], tt.processes)
        yield g
        g = GaugeMetricFamily(f"{p}_tree_up", "1 when the tree's root was read in the last sample, 0 when it "
                              "is gone or unreadable (its tree metrics are then absent).", labels=["root"])
        for root in self.sampler.roots:
            g.add_metric([self.labels.get(root, str(root))], 1 if root in s.trees else 0)
        for label in self.problems:  # a pidfile that named no process
            g.add_metric([label], 0)
        yield g

    def _exporter_metrics(self, s: Sample) -> Iterator[Any]:
        p = self.prefix
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
          roots: Roots | None = None) -> tuple[Any, threading.Thread, InspectCollector]:
    """Start the HTTP exporter in a thread; returns (server, thread, collector)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = InspectCollector(sampler, duty or DutyCycle(0.2), roots=roots)
    registry.register(collector)
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return server, thread, collector
