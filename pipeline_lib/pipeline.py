"""Compose source -> parse_json -> transforms -> sinks from a :class:`PipelineConfig`.

Two streaming queries read the same source: ``output`` writes the valid rows, ``quarantine`` the
rejected ones with their reason. Each has its own checkpoint (``<checkpoint>/output`` and
``<checkpoint>/quarantine``), so each is exactly-once on its own.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from pipeline_lib.config import FILE_SINK_FORMATS, PipelineConfig, spark_trigger
from pipeline_lib.sinks import claim_checkpoint, start_sink
from pipeline_lib.sources import read_stream
from pipeline_lib.transforms import (
    get_transform,
    parse_json,
    quarantined_records,
    select_columns,
    valid_records,
)

OUTPUT_QUERY = "output"
QUARANTINE_QUERY = "quarantine"
ROWS_METRIC = "rows"


def build_streams(spark: SparkSession, config: PipelineConfig) -> Dict[str, DataFrame]:
    """The two streaming DataFrames, by query name, before any sink is attached.

    >>> streams = build_streams(spark, load_pipeline_config())  # doctest: +SKIP
    >>> sorted(streams)  # doctest: +SKIP
    ['output', 'quarantine']
    """
    parsed = read_stream(spark, config.source, config.kafka).transform(
        parse_json(max_bytes=config.max_payload_bytes)
    )
    good = parsed.transform(valid_records())
    for spec in config.transforms:
        good = good.transform(get_transform(spec.name, **spec.options))
    if config.output.columns:
        good = good.transform(select_columns(config.output.columns))
    bad = parsed.transform(quarantined_records())
    # Observed metrics count what reaches each sink, batch by batch, in the query progress.
    return {
        OUTPUT_QUERY: good.observe(OUTPUT_QUERY, F.count(F.lit(1)).alias(ROWS_METRIC)),
        QUARANTINE_QUERY: bad.observe(QUARANTINE_QUERY, F.count(F.lit(1)).alias(ROWS_METRIC)),
    }


@dataclass
class QueryTotals:
    batches: int = 0
    input_rows: int = 0
    rows: int = 0
    last_batch_id: int = -1


@dataclass
class RunSummary:
    """What one run wrote, per query (``output``: rows written, ``quarantine``: rows rejected)."""

    totals: Dict[str, QueryTotals] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.totals.get(OUTPUT_QUERY, QueryTotals()).rows

    @property
    def quarantined(self) -> int:
        return self.totals.get(QUARANTINE_QUERY, QueryTotals()).rows

    def line(self) -> str:
        return (
            f"done: {self.written} rows written, {self.quarantined} quarantined "
            f"in {self.seconds:.1f}s"
        )


class ProgressPrinter(StreamingQueryListener):
    """Prints one line per micro-batch of each query, from Spark's own query progress."""

    def __init__(self, emit: Callable[[str], None], names: List[str]):
        self._emit = emit
        self._names = names
        self._lock = threading.Lock()
        self.totals: Dict[str, QueryTotals] = {name: QueryTotals() for name in names}

    def onQueryStarted(self, event) -> None:  # noqa: N802 (Spark's callback names)
        pass

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        pass

    def onQueryProgress(self, event) -> None:  # noqa: N802
        progress = event.progress
        if progress.name not in self.totals:
            return
        metrics = progress.observedMetrics.get(progress.name)
        rows = int(metrics[ROWS_METRIC]) if metrics is not None else 0
        with self._lock:
            totals = self.totals[progress.name]
            if progress.batchId <= totals.last_batch_id:
                return
            totals.batches += 1
            totals.input_rows += progress.numInputRows
            totals.rows += rows
            totals.last_batch_id = progress.batchId
        verb = "written" if progress.name == OUTPUT_QUERY else "quarantined"
        self._emit(
            f"{progress.name} batch {progress.batchId}: {progress.numInputRows} input rows, "
            f"{progress.processedRowsPerSecond:.1f} rows/s, {rows} {verb}"
        )

    def wait_for(self, query: StreamingQuery, timeout: float = 10.0) -> None:
        """Wait until the listener has seen the query's last batch that read rows: events arrive
        asynchronously. (An idle query's progress repeats the next batch id, with no rows.)"""
        with_rows = [progress["batchId"] for progress in query.recentProgress if progress["numInputRows"]]
        if not with_rows:
            return
        deadline = time.monotonic() + timeout
        while self.totals[query.name].last_batch_id < with_rows[-1] and time.monotonic() < deadline:
            time.sleep(0.05)


def run_pipeline(
    spark: SparkSession,
    config: PipelineConfig,
    emit: Callable[[str], None] = print,
    stop_event: Optional[threading.Event] = None,
) -> RunSummary:
    """Run the pipeline until the trigger ends it (``available-now``, ``once``) or ``stop_event``
    is set, printing progress with ``emit``. A failed query raises after the other is stopped.

    >>> run_pipeline(get_spark(), load_pipeline_config()).line()  # doctest: +SKIP
    'done: 20 rows written, 0 quarantined in 9.8s'
    """
    started = time.monotonic()
    streams = build_streams(spark, config)
    trigger = spark_trigger(config.trigger)
    sinks = {OUTPUT_QUERY: config.output, QUARANTINE_QUERY: config.quarantine}
    checkpoints = {name: os.path.join(config.checkpoint, name) for name in streams}
    # Every sink's checkpoint is checked before any query starts, so a refusal writes nothing.
    for name, sink in sinks.items():
        if sink.format in FILE_SINK_FORMATS:
            claim_checkpoint(checkpoints[name], sink.path)
    printer = ProgressPrinter(emit, list(streams))
    spark.streams.addListener(printer)
    queries: List[StreamingQuery] = []
    try:
        for name, df in streams.items():
            queries.append(start_sink(df, sinks[name], checkpoints[name], trigger, name))
        _await(queries, stop_event)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
        # Only once stopped is a query's progress final; its last events may still be on the way.
        for query in queries:
            printer.wait_for(query)
        spark.streams.removeListener(printer)
    return RunSummary(totals=printer.totals, seconds=time.monotonic() - started)


def _await(queries: List[StreamingQuery], stop_event: Optional[threading.Event]) -> None:
    while any(query.isActive for query in queries):
        for query in queries:
            if query.exception() is not None:
                raise query.exception()
        if stop_event is not None and stop_event.is_set():
            return
        for query in queries:
            query.awaitTermination(0.5)
    for query in queries:
        if query.exception() is not None:
            raise query.exception()
