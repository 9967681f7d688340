"""Running a plan: the streaming queries, the write of each micro-batch, stopping, the reports.

One query reads the source once per micro-batch (``foreachBatch``). Each batch is parsed once
for the ``output`` sink (the valid rows, after the steps) and the ``quarantine`` sink (the
rejected rows with their reason). A batch expected to have rejected rows (the run's first, and
each after one that had them) is written to both by one write, each row as a line of its sink's
text (CSV, JSON lines), when both sinks write unpartitioned text files on one file system that
renames without copying, no file rolls over mid-task (``spark.sql.files.maxRecordsPerFile``) and
every step works row by row, keeps every row and counts nothing (:attr:`Step.row_wise`); else it
is kept in memory for both. One expected to be clean is counted on its way to the output, and
read a second time only if it has rejected rows after all. Each
sink's ledger says whether it has the batch already; a sink writes, commits, and the ledger
marks the batch; Spark commits the batch in the checkpoint only after every sink returned, so a
batch interrupted anywhere is replayed with the same id and rows, and lands once.

A step may reject rows as the parse stage does (the ``_error`` mark, as an expectation with
``on_violation: quarantine`` does): those go to the quarantine with the parse's rejects. A
step's ``metrics`` are observed on the rows going into it and reported per batch.

A plan whose steps keep state (an aggregation by event-time window with a watermark) cannot
work one micro-batch at a time: it runs two queries, each with its own checkpoint, the steps
applied to the parsed stream itself, each query writing its sink the same way.

A real-time plan (``pipeline_lib.realtime``) runs one query that Spark's own Kafka writer ends,
record by record: no batch passes through the runner, whose reports come from the progress of
each epoch Spark committed.

The walk of a batch: :class:`BatchWriter` (Spark's ``foreachBatch``) -> :func:`deliver` per sink
(ledger, write, commit, mark) -> a :class:`~pipeline_lib.reports.BatchReport` -> the main
thread's :class:`_Dispatcher`, which adds the query's progress (Kafka offsets) and hands the
report to every listener.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from pyspark import StorageLevel
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipeline_lib.checkpoint import claim_checkpoint
from pipeline_lib.errors import PipelineError, StopRequested
from pipeline_lib.pipeline import OUTPUT, QUARANTINE, PipelineConfig
from pipeline_lib.plan import Plan, Query, make_plan
from pipeline_lib.realtime import EpochReports, kafka_writer, records
from pipeline_lib.reports import BatchReport, ConsoleListener, Listener, PartitionOffsets, RunSummary
from pipeline_lib.schema import column_named
from pipeline_lib.sinks import Sink, ledger_for
from pipeline_lib.sinks.files import FileSink, Line, Route, RoutedLines, can_stage_together, stage_in_one_pass
from pipeline_lib.sinks.folders import RenameError
from pipeline_lib.steps import Step
from pipeline_lib.transforms import (
    ERROR_COLUMN,
    MARKER_COLUMNS,
    quarantine_columns,
    quarantined_records,
    valid_records,
)

# How long a stop waits for the batch being written before it interrupts it.
STOP_GRACE_SECONDS = 60.0
# A rejected row's quarantine line, made before the steps of a one-pass write.
QUARANTINE_LINE = "_quarantine_line"

Counts = Callable[[], Dict[str, int]]


def run(
    plan: Plan,
    spark: SparkSession,
    listeners: Sequence[Listener] = (),
    stop_event: Optional[threading.Event] = None,
) -> RunSummary:
    """Run ``plan`` until its trigger ends it (``available-now``, ``once``) or ``stop_event``
    is set, handing each batch's report to ``listeners``, then the summary. A failed query
    raises."""
    started = time.monotonic()
    for query in plan.queries:
        claim_checkpoint(query.checkpoint, {name: plan.sinks[name].location for name in query.sinks})
    dispatcher = _Dispatcher(listeners, EpochReports() if plan.real_time else None)
    streams = _streams(plan, spark)
    writers = _writers(plan, dispatcher, streams)
    started_queries: Dict[str, StreamingQuery] = {}
    try:
        for query in plan.queries:
            started_queries[query.name] = _start(plan, query, streams[query.name], writers.get(query.name))
        _await(started_queries, dispatcher, stop_event)
    finally:
        for writer in writers.values():
            writer.stop_between_batches(STOP_GRACE_SECONDS)
        for streaming_query in started_queries.values():
            if streaming_query.isActive:
                streaming_query.stop()
        dispatcher.dispatch(started_queries, final=True)
    # A batch refused by a stopping writer fails its query; that failure is the stop itself.
    refused = any(writer.refused for writer in writers.values())
    for streaming_query in started_queries.values():
        error = streaming_query.exception()
        if error is not None and not refused:
            raise error
    dispatcher.summary.seconds = time.monotonic() - started
    dispatcher.summary.offsets_lost = sum(part.end - part.start for part in plan.offsets_lost)
    for listener in listeners:
        listener.on_summary(dispatcher.summary)
    return dispatcher.summary


def run_pipeline(
    spark: SparkSession,
    config: PipelineConfig,
    emit: Callable[[str], None] = print,
    stop_event: Optional[threading.Event] = None,
    listeners: Sequence[Listener] = (),
) -> RunSummary:
    """Plan and run ``config``, a line per micro-batch and the summary's through ``emit``.

    >>> run_pipeline(get_spark(), load_pipeline_config()).line()  # doctest: +SKIP
    'done: 20 rows written, 0 quarantined in 9.8s'
    """
    return run(make_plan(config, spark), spark, [ConsoleListener(emit), *listeners], stop_event)


def _streams(plan: Plan, spark: SparkSession) -> Dict[str, DataFrame]:
    """What each query reads: the parsed stream, or, for a stateful plan, the parsed stream
    with the steps applied (output) and its rejects (quarantine)."""
    source = plan.config.source.read_stream(spark)
    if plan.real_time:
        return {plan.queries[0].name: records(plan.config, plan.schema, plan.parse, plan.steps, source)}
    parsed = source.transform(plan.parse)
    if not plan.stateful:
        return {plan.queries[0].name: parsed}
    rows = parsed.transform(valid_records())
    for step in plan.steps:
        rows = rows.transform(step)
    return {OUTPUT: rows, QUARANTINE: parsed.transform(quarantined_records(plan.schema))}


def _writers(plan: Plan, dispatcher: "_Dispatcher", streams: Mapping[str, DataFrame]) -> Dict[str, "_Guarded"]:
    if plan.real_time:
        return {}  # Spark writes each record itself; the reports come from its progress
    if not plan.stateful:
        name = plan.queries[0].name
        return {name: BatchWriter(plan, dispatcher.add, streams[name])}
    return {query.name: SinkWriter(query.name, plan.sinks[query.name], dispatcher.add) for query in plan.queries}


def _start(plan: Plan, query: Query, stream: DataFrame, writer: Optional["_Guarded"]) -> StreamingQuery:
    """The one way a query of a plan starts: named, through its writer (none in real-time mode:
    Spark's Kafka writer), with its checkpoint."""
    writer_builder = stream.writeStream.queryName(query.name)
    if writer is None:
        writer_builder = kafka_writer(plan.config, writer_builder)
    else:
        writer_builder = writer_builder.foreachBatch(writer)
    if plan.stateful:
        writer_builder = writer_builder.outputMode("append")  # a window once, when final
    return writer_builder.trigger(**plan.trigger).option("checkpointLocation", query.checkpoint).start()


def _await(
    queries: Mapping[str, StreamingQuery], dispatcher: "_Dispatcher", stop_event: Optional[threading.Event]
) -> None:
    """Until every query ended, one failed or ``stop_event`` is set, dispatching reports."""
    while any(query.isActive for query in queries.values()):
        if stop_event is not None and stop_event.is_set():
            return
        if any(query.exception() is not None for query in queries.values()):
            return
        if len(queries) == 1:
            next(iter(queries.values())).awaitTermination(0.2)  # type: ignore[arg-type]  # seconds; a float works
        else:
            time.sleep(0.2)
        dispatcher.dispatch(queries)


class _Guarded:
    """A ``foreachBatch`` function that a stop lets finish the batch in progress and refuses
    the next, so that a stop never leaves a batch half-published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writing = False
        self.stopping = False
        self.refused = False  # a batch was refused with StopRequested

    def stop_between_batches(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._writing or time.monotonic() > deadline:
                    self.stopping = True
                    return
            time.sleep(0.05)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        with self._lock:
            if self.stopping:
                self.refused = True
                raise StopRequested(f"batch {batch_id} not started: the run is stopping")
            self._writing = True
        try:
            self.write(batch, batch_id)
        finally:
            with self._lock:
                self._writing = False

    def write(self, batch: DataFrame, batch_id: int) -> None:
        raise NotImplementedError


def deliver(sink: Sink, rows: Optional[DataFrame], spark: SparkSession, batch_id: int, count: Counts) -> None:
    """Write ``rows`` to ``sink`` as batch ``batch_id``, commit with the row count (``count``
    reads it once the rows went through), and mark the batch in the sink's ledger; ``rows`` None:
    the batch has no rows for this sink, which commits it empty."""
    if rows is not None:
        if sink.options.columns:
            rows = rows.select(*[column_named(name) for name in _written_columns(sink, rows.columns)])
        sink.write(rows, batch_id)
    _publish(sink, spark, batch_id, count()["rows"] if rows is not None else 0)


def _written_columns(sink: Sink, columns: Sequence[str]) -> List[str]:
    """The columns of ``columns`` that ``sink`` writes, in order: those it names, or all."""
    if not sink.options.columns:
        return list(columns)
    missing = [name for name in sink.options.columns if name not in columns]
    if missing:
        raise PipelineError(f"columns {missing} are not in the rows to write; they have {list(columns)}")
    return list(sink.options.columns)


def _publish(sink: Sink, spark: SparkSession, batch_id: int, rows: int) -> None:
    """Commit batch ``batch_id`` of ``sink``, staged with ``rows`` rows, and mark it in the ledger."""
    sink.commit(spark, batch_id, rows)
    ledger_for(sink, spark).mark(batch_id)


class _OnePass(NamedTuple):
    """How a one-pass write makes its lines of the parsed rows: the columns that ready them
    for the steps, and the routed lines of the output and the quarantine after the steps."""

    readied: Dict[str, Column]
    lines: RoutedLines


class BatchWriter(_Guarded):
    """The ``foreachBatch`` function of a one-query plan, over the parsed stream ``parsed``:
    write every sink, report."""

    def __init__(self, plan: Plan, report: Callable[[BatchReport], None], parsed: DataFrame):
        super().__init__()
        self.plan = plan
        self.report = report
        # Whether the next batch is expected to have rejected rows: the run's first batch (often
        # the backlog, the largest) and each batch after one that had them.
        self.expects_rejects = True
        # Made once a run from the stream's schema, which every batch has: making these columns
        # costs more than writing a small batch.
        self.one_pass = self._one_pass(parsed)

    def _one_pass(self, parsed: DataFrame) -> Optional[_OnePass]:
        """How the batches of ``parsed`` are staged for the output and the quarantine by one
        write, when both sinks write lines of text to one file system that renames and every
        step works row by row, keeps every row and counts nothing (a batch's rejected rows then
        go through the steps with the valid ones); None when each sink needs a write."""
        output, quarantine = self.plan.sinks.get(OUTPUT), self.plan.sinks.get(QUARANTINE)
        steps_pass_rejects = all(step.row_wise and step.keeps_rows and step.metrics is None for step in self.plan.steps)
        if not (isinstance(output, FileSink) and isinstance(quarantine, FileSink) and steps_pass_rejects):
            return None
        rejected_line = _line(quarantine, parsed, quarantine_columns(parsed.columns, self.plan.schema))
        if rejected_line is None or not can_stage_together(parsed.sparkSession, [output, quarantine]):
            return None
        valid = F.col(ERROR_COLUMN).isNull()
        # The quarantine's line is made before the steps, from the rows as parsed, as a write of
        # its own would make it. A rejected row then goes through the steps with its fields
        # null, so that no step computes on a value the parse refused.
        readied = {
            QUARANTINE_LINE: F.when(~valid, rejected_line.text),
            **{name: F.when(valid, column_named(name)) for name in self.plan.schema.fieldNames()},
        }
        try:
            rows, _ = _apply(self.plan.steps, parsed.withColumns(readied), batch_id=0, observing=None)
        except (PySparkException, ValueError, TypeError):
            return None  # a step's bad setting: the first batch's write fails with it, as the query's error
        held = {*MARKER_COLUMNS, QUARANTINE_LINE}
        output_line = _line(output, rows, {name: column_named(name) for name in rows.columns if name not in held})
        if output_line is None:
            return None
        routes = [
            Route(output, valid, output_line),
            Route(quarantine, ~valid, Line(F.col(QUARANTINE_LINE), rejected_line.header)),
        ]
        return _OnePass(readied, RoutedLines(routes))

    def write(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        spark = batch.sparkSession
        pending = {
            name: sink for name, sink in self.plan.sinks.items() if not ledger_for(sink, spark).written(batch_id)
        }
        if not pending:
            self.report(BatchReport(batch_id, skipped=True))
            return
        # A batch expected to be clean is read once by the output's write alone (below).
        report = self._write_in_one_pass(batch, pending, batch_id) if self.expects_rejects else None
        if report is None:
            report = self._write_each(batch, pending, batch_id)
        self.expects_rejects = bool(report.quarantined)
        self.report(_timed(report, time.monotonic() - started))

    def _write_in_one_pass(
        self, parsed: DataFrame, pending: Mapping[str, Sink], batch_id: int
    ) -> Optional[BatchReport]:
        """The batch staged for the output and the quarantine by one write (:meth:`_one_pass`),
        which reads it once without keeping it; None when a write each is needed."""
        output, quarantine = pending.get(OUTPUT), pending.get(QUARANTINE)
        if self.one_pass is None or output is None or quarantine is None:
            return None
        spark = parsed.sparkSession
        rows, _ = _apply(self.plan.steps, parsed.withColumns(self.one_pass.readied), batch_id, observing=None)
        rows, counts = _parse_counts(rows, batch_id, observing=True)
        try:
            stage_in_one_pass(rows, self.one_pass.lines, batch_id)
        except RenameError:  # a staged file could not be moved into its sink's folder
            self.one_pass = None  # as it would fail again (two viewfs mount points)
            return None
        written, rejected = counts()["valid"], counts()["rejected"]
        _publish(output, spark, batch_id, written)
        _publish(quarantine, spark, batch_id, rejected)
        return BatchReport(batch_id, rows_read=written + rejected, written=written, quarantined=rejected)

    def _write_each(self, parsed: DataFrame, pending: Mapping[str, Sink], batch_id: int) -> BatchReport:
        """The batch written to each pending sink in turn."""
        # A batch the quarantine takes rows of is kept in memory: the output and the quarantine
        # then read and parse it once (keeping it costs a fifth of the batch's time; reading it
        # again for the quarantine, as much as the batch itself). A batch expected to be clean is
        # counted on the way through the output's write when its sink reports Spark's observed
        # metrics, so that it is read and parsed once without being kept.
        observing = OUTPUT not in pending or (
            pending[OUTPUT].observes_writes and not (QUARANTINE in pending and self.expects_rejects)
        )
        if not observing:
            parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            report = self._write_sinks(parsed, pending, batch_id, observing)
        finally:
            if not observing:
                parsed.unpersist()
        return report

    def _write_sinks(
        self, parsed: DataFrame, pending: Mapping[str, Sink], batch_id: int, observing: bool
    ) -> BatchReport:
        spark = parsed.sparkSession
        written: Optional[int] = None
        metrics: Dict[str, int] = {}
        rejected = read = 0
        if OUTPUT in pending:
            parsed, parse_counts = _parse_counts(parsed, batch_id, observing)
            rows, step_counts = _apply(self.plan.steps, parsed.transform(valid_records()), batch_id, observing)
            marked = ERROR_COLUMN in rows.columns  # a step rejected rows too
            later_counts: Counts = lambda: {"rows": 0}  # noqa: E731
            if marked:
                rows, later_counts = _counter(rows, f"marked-{batch_id}", observing, rows=F.count(F.col(ERROR_COLUMN)))
            output_rows = rows.transform(valid_records())
            if self.plan.keeps_rows and not marked:
                output_counts: Counts = lambda: {"rows": parse_counts()["valid"]}  # noqa: E731
            else:
                output_rows, output_counts = _counter(
                    output_rows, f"written-{batch_id}", pending[OUTPUT].observes_writes, rows=F.count(F.lit(1))
                )
            deliver(pending[OUTPUT], output_rows, spark, batch_id, output_counts)
            written = output_counts()["rows"]
            rejected = parse_counts()["rejected"] + later_counts()["rows"]
            metrics = {label: value for counts in step_counts for label, value in counts().items()}
            read = parse_counts()["valid"] + parse_counts()["rejected"]
        if QUARANTINE in pending:
            rejected_rows: Optional[DataFrame] = None
            if OUTPUT not in pending:  # the output had this batch: count the rejects alone
                rejected_rows = self._rejected(parsed, batch_id)
                rejected = read = rejected_rows.count()
            elif rejected:
                rejected_rows = self._rejected(parsed, batch_id)
            known = rejected
            # A batch without rejected rows commits the quarantine empty, with no Spark job and
            # without building the quarantine's plan (a tenth of a small batch's time).
            deliver(pending[QUARANTINE], rejected_rows if known else None, spark, batch_id, lambda: {"rows": known})
        return BatchReport(batch_id, rows_read=read, written=written, quarantined=rejected, metrics=metrics)

    def _rejected(self, parsed: DataFrame, batch_id: int) -> DataFrame:
        """The batch's rows for the quarantine: the parse's rejects, then those the steps
        rejected, in the same columns."""
        rejected = parsed.transform(quarantined_records(self.plan.schema))
        transformed, _ = _apply(self.plan.steps, parsed.transform(valid_records()), batch_id, observing=None)
        if ERROR_COLUMN not in transformed.columns:
            return rejected
        later = transformed.transform(quarantined_records(self.plan.schema))
        return rejected.unionByName(
            later.select(*[name for name in rejected.columns if name in later.columns]), allowMissingColumns=True
        )


def _line(sink: FileSink, rows: DataFrame, columns: Mapping[str, Column]) -> Optional[Line]:
    """How ``sink`` writes a row of ``columns`` (over ``rows``) as a line, of the columns it
    writes; None when it does not write lines, or names a column that is not there (its own
    write says which, once it has rows to write)."""
    try:
        chosen = {name: columns[name] for name in _written_columns(sink, list(columns))}
    except PipelineError:
        return None
    return sink.line(chosen, rows.select(*[value.alias(name) for name, value in chosen.items()]).schema)


def _parse_counts(parsed: DataFrame, batch_id: int, observing: bool) -> Tuple[DataFrame, Counts]:
    """``parsed`` and a reader of how many of its rows the parse took (``valid``) and rejected
    (``rejected``), as :func:`_counter` counts them."""
    valid = F.col(ERROR_COLUMN).isNull()
    return _counter(parsed, f"parsed-{batch_id}", observing, valid=F.count_if(valid), rejected=F.count_if(~valid))


def _apply(
    steps: Sequence[Step], rows: DataFrame, batch_id: int, observing: Optional[bool]
) -> Tuple[DataFrame, List[Counts]]:
    """``steps`` applied to ``rows``, each step's metrics counted on its input (unless
    ``observing`` is None: not counted) with their readers."""
    counters: List[Counts] = []
    for index, step in enumerate(steps):
        if step.metrics is not None and observing is not None:
            rows, counts = _counter(rows, f"metrics-{batch_id}-{index}", observing, **step.metrics(rows))
            counters.append(counts)
        rows = rows.transform(step)
    return rows, counters


def _counter(df: DataFrame, name: str, observing: bool, **columns: Column) -> Tuple[DataFrame, Counts]:
    """``df`` and a reader of the aggregates ``columns`` over it: observed on the way through
    the next action on ``df`` (``observing``), or computed by an aggregation of their own
    (for a ``df`` kept in memory). The reader computes once."""
    aliased = [column.alias(label) for label, column in columns.items()]
    if observing:
        observation = Observation(name)
        df = df.observe(observation, *aliased)
        read: Callable[[], Mapping[str, object]] = lambda: observation.get  # noqa: E731
    else:
        counted = df
        read = lambda: counted.agg(*aliased).first().asDict()  # type: ignore[union-attr]  # noqa: E731
    values: Dict[str, int] = {}

    def counts() -> Dict[str, int]:
        if not values:
            values.update({label: int(value) for label, value in read().items()})  # type: ignore[call-overload]
        return values

    return df, counts


class SinkWriter(_Guarded):
    """The ``foreachBatch`` function of a query whose rows are ready (a stateful plan's):
    write them to one sink and report."""

    def __init__(self, name: str, sink: Sink, report: Callable[[BatchReport], None]):
        super().__init__()
        self.name = name
        self.sink = sink
        self.report = report

    def write(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        if ledger_for(self.sink, spark).written(batch_id):
            self.report(BatchReport(batch_id, skipped=True, query=self.name))
            return
        started = time.monotonic()
        rows, counts = _counter(batch, f"{self.name}-{batch_id}", self.sink.observes_writes, rows=F.count(F.lit(1)))
        deliver(self.sink, rows, spark, batch_id, counts)
        count = counts()["rows"]
        written = count if self.name == OUTPUT else 0
        report = BatchReport(
            batch_id,
            rows_read=count,
            written=written,
            quarantined=count - written,
            query=self.name,
        )
        self.report(_timed(report, time.monotonic() - started))


def _timed(report: BatchReport, seconds: float) -> BatchReport:
    return BatchReport(**{**report.__dict__, "seconds": seconds, "finished_at": time.time()})


class _Dispatcher:
    """Reports from the writers, completed with their query's progress (the Kafka offsets a
    batch covered) and handed to the listeners in batch order, from the thread that runs the
    plan."""

    def __init__(self, listeners: Sequence[Listener], epochs: Optional[EpochReports] = None):
        self.listeners = listeners
        self.epochs = epochs  # a real-time query's reports, made from its progress
        self.summary = RunSummary()
        self._pending: List[BatchReport] = []
        self._lock = threading.Lock()

    def add(self, report: BatchReport) -> None:
        with self._lock:
            self._pending.append(report)
            self.summary.add(report)

    def dispatch(self, queries: Mapping[str, StreamingQuery], final: bool = False) -> None:
        if self.epochs is not None:
            for query in queries.values():
                for report in self.epochs.new(query):
                    self.add(report)
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        progress = _progress_by_batch(queries, [report.batch_id for report in pending])
        for index, report in enumerate(pending):
            found = progress.get((report.query or next(iter(queries), ""), report.batch_id))
            if found is None and not final:
                with self._lock:  # its progress comes with the next poll
                    self._pending[:0] = pending[index:]
                return
            for listener in self.listeners:
                listener.on_batch(_with_progress(report, found) if found else report)


def _progress_by_batch(queries: Mapping[str, StreamingQuery], batch_ids: List[int]) -> Dict[Tuple[str, int], dict]:
    """The progress of each query's batches among ``batch_ids``, as Spark reports it (JSON)."""
    found: Dict[Tuple[str, int], dict] = {}
    for name, query in queries.items():
        try:
            recent = query.recentProgress
        except PySparkException:
            continue
        for progress in recent:
            batch = json.loads(progress.json)
            if batch.get("batchId") in batch_ids:
                found[(name, batch["batchId"])] = batch
    return found


def _with_progress(report: BatchReport, progress: dict) -> BatchReport:
    """``report`` with the Kafka offsets of its batch and how far behind the topic it left
    the query, from the query's progress."""
    offsets: List[PartitionOffsets] = []
    behind: Optional[int] = None
    for source in progress.get("sources", []):
        start, end = _offsets(source.get("startOffset")), _offsets(source.get("endOffset"))
        for (topic, partition), last in sorted(end.items()):
            offsets.append(PartitionOffsets(topic, partition, start.get((topic, partition), -1), last))
        most = (source.get("metrics") or {}).get("maxOffsetsBehindLatest")
        if most is not None:
            behind = max(behind or 0, int(float(most)))
    if not offsets and behind is None:
        return report
    return BatchReport(**{**report.__dict__, "offsets": tuple(offsets), "offsets_behind_latest": behind})


def _offsets(value: object) -> Dict[Tuple[str, int], int]:
    """Kafka offsets as the source reports them (``{"topic": {"0": 12}}``) by (topic, partition);
    other sources' offsets give none."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    found: Dict[Tuple[str, int], int] = {}
    for topic, partitions in value.items():
        if not isinstance(partitions, dict):
            return {}
        for partition, offset in partitions.items():
            if isinstance(offset, int) and str(partition).lstrip("-").isdigit():
                found[(topic, int(partition))] = offset
    return found
