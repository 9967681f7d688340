"""Progress as data: a report per micro-batch, a summary per run, and the listeners that read them.

The runner makes a :class:`BatchReport` for every micro-batch and hands it to each listener:
the console line (:class:`ConsoleListener`), a file of JSON lines (:class:`JsonLinesListener`,
``--metrics-file``), Kestra's outputs (:class:`KestraOutputs`). The benchmark and the tests read
the same fields; no figure is parsed back out of a sentence.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Callable, Dict, Iterable, Mapping, Optional, Tuple


@dataclass(frozen=True)
class PartitionOffsets:
    """The offsets of one Kafka partition a batch covered: from ``start`` to ``end``, exclusive."""

    topic: str
    partition: int
    start: int
    end: int


def offsets_text(offsets: Iterable[PartitionOffsets]) -> str:
    """Offset ranges, partition by partition, as a sentence says them.

    >>> offsets_text([PartitionOffsets("input-data", 0, 20, 30)])
    'partition 0 offsets 20 to 29 (10)'
    """
    return ", ".join(
        f"partition {part.partition} offsets {part.start} to {part.end - 1} ({part.end - part.start})"
        for part in offsets
    )


@dataclass(frozen=True)
class BatchReport:
    """What one micro-batch did.

    ``written`` is None when the output had written this batch before a restart (``skipped``);
    ``metrics`` holds each transform's counts (an expectation's violations) by label; ``offsets``
    the Kafka offsets the batch covered, per partition, and ``offsets_behind_latest`` how far the
    query was behind the topic's end after it, where the source is Kafka.
    """

    batch_id: int
    rows_read: int = 0
    written: Optional[int] = None
    quarantined: int = 0
    seconds: float = 0.0
    metrics: Mapping[str, int] = field(default_factory=dict)
    skipped: bool = False
    query: str = ""  # which query of a pipeline with two (stateful), else empty
    offsets: Tuple[PartitionOffsets, ...] = ()
    offsets_behind_latest: Optional[int] = None
    finished_at: float = 0.0  # epoch seconds when every sink had committed the batch

    def line(self) -> str:
        """The console line.

        >>> BatchReport(3, rows_read=20, written=18, quarantined=2, seconds=0.5).line()
        'batch 3: 20 rows in 0.50s (40 rows/s): 18 written, 2 quarantined'
        """
        name = f"{self.query} batch {self.batch_id}" if self.query else f"batch {self.batch_id}"
        if self.skipped:
            return f"{name}: written before a restart, skipped"
        rate = self.rows_read / max(self.seconds, 1e-9)
        written = "-" if self.written is None else str(self.written)
        return (
            f"{name}: {self.rows_read} rows in {self.seconds:.2f}s ({rate:,.0f} rows/s): "
            f"{written} written, {self.quarantined} quarantined{metrics_text(self.metrics)}"
        )

    def as_dict(self) -> Dict[str, Any]:
        return {"type": "batch", **asdict(self)}


@dataclass
class RunSummary:
    """What one run did: batches, rows written to the output and quarantined, the transforms'
    metrics (an expectation's violations) added up, and the offsets the run skipped because
    Kafka's retention had deleted them before they were read (``on_data_loss: skip``)."""

    batches: int = 0
    written: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    metrics: Dict[str, int] = field(default_factory=dict)
    offsets_lost: int = 0

    def add(self, report: BatchReport) -> None:
        """Count ``report`` in, unless its batch was written before a restart."""
        if report.skipped:
            return
        if report.query in ("", "output"):
            self.batches += 1
        self.written += report.written or 0
        self.quarantined += report.quarantined
        self.add_metrics(report.metrics)

    def add_metrics(self, metrics: Mapping[str, int]) -> None:
        for label, value in metrics.items():
            self.metrics[label] = self.metrics.get(label, 0) + value

    def line(self) -> str:
        """The console line.

        >>> RunSummary(written=5, seconds=2.0, offsets_lost=10).line()
        'done: 5 rows written, 0 quarantined in 2.0s; 10 offsets lost to retention'
        """
        done = f"done: {self.written} rows written, {self.quarantined} quarantined in {self.seconds:.1f}s"
        lost = f"; {self.offsets_lost} offsets lost to retention" if self.offsets_lost else ""
        return done + lost + metrics_text(self.metrics)

    def as_dict(self) -> Dict[str, Any]:
        return {"type": "summary", **asdict(self)}


def metrics_text(metrics: Mapping[str, int]) -> str:
    """``metrics`` as the end of a report line.

    >>> metrics_text({"expectation 'positive' (drop) violations": 2})
    "; expectation 'positive' (drop) violations: 2"
    """
    return "".join(f"; {label}: {value}" for label, value in metrics.items())


class Listener:
    """Receives each batch's report and the run's summary; override what you need."""

    def on_batch(self, report: BatchReport) -> None:
        """Called once per micro-batch, in batch order."""

    def on_summary(self, summary: RunSummary) -> None:
        """Called once, when the run ends without an error."""

    def close(self) -> None:
        """Called once when the job ends, whatever happened: release files, ports."""


class ConsoleListener(Listener):
    """The line of each batch, and the summary's, through ``emit`` (``print``)."""

    def __init__(self, emit: Callable[[str], None] = print):
        self.emit = emit

    def on_batch(self, report: BatchReport) -> None:
        self.emit(report.line())

    def on_summary(self, summary: RunSummary) -> None:
        self.emit(summary.line())


class JsonLinesListener(Listener):
    """One JSON object a line, appended to ``path``: ``{"type": "batch", ...}`` per batch (the
    fields of :class:`BatchReport`) and ``{"type": "summary", ...}`` at the end of the run."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self._file: IO[str] = open(path, "a", encoding="utf-8")

    def _append(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def on_batch(self, report: BatchReport) -> None:
        self._append(report.as_dict())

    def on_summary(self, summary: RunSummary) -> None:
        self._append(summary.as_dict())

    def close(self) -> None:
        self._file.close()


class KestraOutputs(Listener):
    """The run's counts as outputs of the Kestra task, when the job runs as one: Kestra's task
    runners give every command ``WORKING_DIR``, and the flow installs Kestra's Python package."""

    def on_summary(self, summary: RunSummary) -> None:
        kestra_outputs({"rows_written": summary.written, "rows_quarantined": summary.quarantined})


def kestra_outputs(outputs: Mapping[str, Any]) -> None:
    """Report ``outputs`` to Kestra, when the job runs as a Kestra task."""
    if not os.environ.get("WORKING_DIR"):
        return
    try:
        from kestra import Kestra
    except ImportError:
        return
    Kestra.outputs(dict(outputs))
