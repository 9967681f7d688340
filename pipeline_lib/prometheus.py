"""The batch reports as Prometheus metrics, served on a loopback port while the job runs.

``jobs/stream.py --metrics-port 9464`` serves http://127.0.0.1:9464/metrics in Prometheus' text
format: rows read, written and quarantined, batches, each batch's duration, each expectation's
violations, and how far behind the end of the topic the job is (the Kafka source's own figure,
the largest over partitions, after each batch). Counters start at zero with each run.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pipeline_lib.reports import BatchReport, Listener, RunSummary
from pipeline_lib.transforms import EXPECTATION_LABEL

_EXPECTATION = re.compile(
    "^"
    + re.escape(EXPECTATION_LABEL).replace(r"\{name\}", "(?P<name>.*)").replace(r"\{on_violation\}", r"(?P<action>\w+)")
    + "$"
)
# A micro-batch takes from tens of milliseconds to minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PrometheusListener(Listener):
    """Serves the reports' figures on ``host:port`` (loopback by default) until :meth:`close`."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.registry = CollectorRegistry()
        self.rows_read = Counter("pipeline_rows_read", "Rows read from the source", registry=self.registry)
        self.rows_written = Counter("pipeline_rows_written", "Rows written to the output", registry=self.registry)
        self.rows_quarantined = Counter(
            "pipeline_rows_quarantined", "Rows sent to the quarantine, with their reason", registry=self.registry
        )
        self.batches = Counter("pipeline_batches", "Micro-batches written", registry=self.registry)
        self.batch_duration = Histogram(
            "pipeline_batch_duration_seconds",
            "Time to write one micro-batch to every sink",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.violations = Counter(
            "pipeline_expectation_violations",
            "Rows that violated an expectation",
            ["expectation", "on_violation"],
            registry=self.registry,
        )
        self.counts = Counter(
            "pipeline_transform_rows", "Other counts reported by transforms", ["counter"], registry=self.registry
        )
        self.offsets_behind = Gauge(
            "pipeline_kafka_offsets_behind_latest",
            "Offsets between the job and the end of the topic after the last batch (max over partitions)",
            registry=self.registry,
        )
        self.last_batch = Gauge("pipeline_last_batch_id", "Id of the last micro-batch written", registry=self.registry)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)

    def on_batch(self, report: BatchReport) -> None:
        if report.skipped:
            return
        self.rows_read.inc(report.rows_read)
        self.rows_written.inc(report.written or 0)
        self.rows_quarantined.inc(report.quarantined)
        self.batches.inc()
        self.batch_duration.observe(report.seconds)
        self.last_batch.set(report.batch_id)
        if report.offsets_behind_latest is not None:
            self.offsets_behind.set(report.offsets_behind_latest)
        for label, value in report.metrics.items():
            match = _EXPECTATION.match(label)
            if match:
                self.violations.labels(match["name"], match["action"]).inc(value)
            else:
                self.counts.labels(label).inc(value)

    def on_summary(self, summary: RunSummary) -> None:
        """Nothing more to serve: the figures are in place until the job exits."""

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
