"""Compose source -> parse_json -> transforms -> sinks from a configuration, as one query.

One streaming query reads the source once per micro-batch. Each batch is parsed once on its way
to the ``output`` sink (the valid rows, after the configured transforms), counting the rejected
rows as it goes; only a batch that has rejected rows is read a second time, for the
``quarantine`` sink (the rejected rows with their reason). Both writes are idempotent
by batch id (see ``pipeline_lib.sinks.files``), and Spark commits the batch in the checkpoint
only after both returned: a batch interrupted anywhere is replayed with the same id and rows.

A transform may reject rows as the parse stage does (the ``_error`` mark, as an expectation with
``on_violation: quarantine`` does): those go to the quarantine with the parse's rejects. A
transform's ``metrics`` are observed on the rows going into it and reported per batch.

A pipeline with a stateful transform (``streaming_stateful``: an aggregation by event-time
window with a watermark) cannot work one micro-batch at a time: it runs two queries instead,
each with its own checkpoint (``<checkpoint>/output``, ``<checkpoint>/quarantine``), the parse
and the transforms applied to the stream itself, each query writing its sink idempotently.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from pydantic import PositiveInt
from pyspark import StorageLevel
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipeline_lib.config import ConfigError, Settings, parse, read_layers, require
from pipeline_lib.kafka_client import KAFKA_ENVIRONMENT, KafkaSettings
from pipeline_lib.schema import PROCESSED_COLUMNS
from pipeline_lib.sinks import Sink, build_sink, claim_checkpoint, spark_trigger
from pipeline_lib.sinks.base import TRIGGER_HELP
from pipeline_lib.sources import Source, build_source
from pipeline_lib.transforms import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    ERROR_COLUMN,
    PARSE_STAGE,
    UnknownTransformError,
    Transform,
    get_transform,
    parse_json,
    quarantined_records,
    valid_records,
)


OUTPUT = "output"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class TransformSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Transform:
        return get_transform(self.name, **self.options)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything ``jobs/stream.py`` needs, validated: a source, the transforms of the valid
    rows, the output and quarantine sinks, one checkpoint and the trigger."""

    kafka: KafkaSettings
    source: Source
    transforms: Tuple[TransformSpec, ...]
    output: Sink
    quarantine: Sink
    checkpoint: str
    trigger: str
    max_payload_bytes: int
    app_name: str

    @property
    def sinks(self) -> Dict[str, Sink]:
        return {OUTPUT: self.output, QUARANTINE: self.quarantine}

    @property
    def stateful(self) -> bool:
        """Whether a transform keeps state across micro-batches (then the stream is transformed)."""
        return any(getattr(spec.build(), "streaming_stateful", False) for spec in self.transforms)


class _Sections(Settings):
    """The top level of a pipeline configuration; each section is validated by its owner."""

    kafka: Dict[str, Any] = {}
    source: Dict[str, Any] = {}
    transforms: List[Any] = [{"name": "add_processed_value"}]
    output: Dict[str, Any] = {}
    quarantine: Dict[str, Any] = {}
    checkpoint: str = "checkpoint"
    trigger: str = "available-now"
    max_payload_bytes: PositiveInt = DEFAULT_MAX_PAYLOAD_BYTES
    app_name: str = "simple-data-pipeline"


DEFAULT_OUTPUT = {"format": "csv", "path": "output", "columns": list(PROCESSED_COLUMNS)}
DEFAULT_QUARANTINE = {"format": "json", "path": "quarantine"}


def load_pipeline_config(
    path: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> PipelineConfig:
    """Read, merge and validate the stream job's configuration (see ``pipeline_lib.config``).

    >>> load_pipeline_config(overrides={"trigger": "processing-time=5s"}).trigger
    'processing-time=5s'
    """
    sections = parse(_Sections, read_layers(path, overrides, environ, KAFKA_ENVIRONMENT))
    kafka = parse(KafkaSettings, sections.kafka, "kafka")
    source = build_source(sections.source, kafka)
    output = build_sink(sections.output, kafka, OUTPUT, DEFAULT_OUTPUT)
    quarantine = build_sink(sections.quarantine, kafka, QUARANTINE, DEFAULT_QUARANTINE)
    require(quarantine.format != "csv", "quarantine.format", "must not be csv: payloads could become spreadsheet formulas; use json or parquet")
    if output.location and quarantine.location:
        require(
            output.location.rstrip("/") != quarantine.location.rstrip("/"),
            "quarantine.path",
            "must differ from output.path: each sink owns its folder",
        )
    require(bool(sections.checkpoint), "checkpoint", "is required")
    require(not os.path.isfile(sections.checkpoint), "checkpoint", f"{sections.checkpoint} is a file, not a folder")
    try:
        spark_trigger(sections.trigger)
    except ConfigError:
        raise ConfigError("trigger", f"unknown trigger {sections.trigger!r}; {TRIGGER_HELP}") from None
    require(
        source.finite or sections.trigger.startswith("processing-time="),
        "trigger",
        f"the {source.describe()} source never runs dry; use processing-time=<interval> with it",
    )
    transforms = _transform_specs(sections.transforms)
    _check_on_schema(source, transforms, sections.app_name)
    return PipelineConfig(
        kafka=kafka,
        source=source,
        transforms=transforms,
        output=output,
        quarantine=quarantine,
        checkpoint=sections.checkpoint,
        trigger=sections.trigger,
        max_payload_bytes=sections.max_payload_bytes,
        app_name=sections.app_name,
    )


def _transform_specs(items: List[Any]) -> Tuple[TransformSpec, ...]:
    specs = []
    for index, item in enumerate(items):
        where = f"transforms[{index}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping) or set(item) - {"name", "options"} or "name" not in item:
            raise ConfigError(where, "must be a name or a mapping with 'name' and optional 'options'")
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}.options", "must be a mapping")
        spec = TransformSpec(str(item["name"]), dict(options))
        require(
            spec.name not in PARSE_STAGE,
            where,
            f"{spec.name} is part of the parse stage, which always runs first; list only transforms of the valid rows",
        )
        try:
            spec.build()
        except (UnknownTransformError, TypeError, ValueError) as error:
            raise ConfigError(where, str(error)) from None
        specs.append(spec)
    return tuple(specs)


def _check_on_schema(source: Source, specs: Tuple[TransformSpec, ...], app_name: str) -> None:
    """Apply the transforms to the schema of the source's valid rows, when one of them has
    options only Spark can check (``checked_on_schema``) or keeps state: a bad option is then a
    :class:`ConfigError` naming the transform, before any query starts."""
    transforms = [spec.build() for spec in specs]
    marked = ("checked_on_schema", "streaming_stateful")
    if not any(getattr(transform, mark, False) for transform in transforms for mark in marked):
        return
    from pipeline_lib.session import get_spark

    spark = SparkSession.getActiveSession() or get_spark(app_name)
    try:
        rows = source.read_stream(spark).transform(parse_json()).transform(valid_records())
    except (PySparkException, RuntimeError) as error:
        raise ConfigError("source", str(error).splitlines()[0]) from None
    stateful = any(getattr(transform, "streaming_stateful", False) for transform in transforms)
    for index, transform in enumerate(transforms):
        try:
            rows = rows.transform(transform)
        except (PySparkException, ValueError, TypeError) as error:
            raise ConfigError(f"transforms[{index}]", str(error).splitlines()[0]) from None
        # A stateful pipeline writes its transformed rows as they come out of the state: rows
        # marked for the quarantine on the way would not be told apart there.
        require(
            not (stateful and ERROR_COLUMN in rows.columns),
            f"transforms[{index}]",
            "a pipeline with a stateful transform cannot quarantine rows in its transforms; use on_violation drop or warn",
        )


@dataclass
class RunSummary:
    """What one run did: batches, rows written to the output and quarantined, and the
    transforms' metrics (an expectation's violations) added up."""

    batches: int = 0
    written: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    metrics: Dict[str, int] = field(default_factory=dict)

    def add_metrics(self, metrics: Mapping[str, int]) -> None:
        for label, value in metrics.items():
            self.metrics[label] = self.metrics.get(label, 0) + value

    def line(self) -> str:
        done = f"done: {self.written} rows written, {self.quarantined} quarantined in {self.seconds:.1f}s"
        return done + metrics_text(self.metrics)


def metrics_text(metrics: Mapping[str, int]) -> str:
    """``metrics`` as the end of a report line.

    >>> metrics_text({"expectation 'positive' (drop) violations": 2})
    "; expectation 'positive' (drop) violations: 2"
    """
    return "".join(f"; {label}: {value}" for label, value in metrics.items())


class StopRequested(RuntimeError):
    """A batch refused because the run is stopping; it is redone by the next run."""


class BatchWriter:
    """The ``foreachBatch`` function: parse once, write every sink, report one line."""

    def __init__(self, config: PipelineConfig, emit: Callable[[str], None]):
        self.config = config
        self.emit = emit
        self.summary = RunSummary()
        self._transforms = [spec.build() for spec in config.transforms]
        self.keeps_rows = all(getattr(transform, "keeps_rows", False) for transform in self._transforms)
        self._lock = threading.Lock()
        self._writing = False
        self.stopping = False

    def stop_between_batches(self, timeout: float) -> None:
        """Let the batch being written finish (up to ``timeout`` seconds) and refuse the next,
        so that a stop never leaves a batch half-published."""
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
                raise StopRequested(f"batch {batch_id} not started: the run is stopping")
            self._writing = True
        try:
            self._write(batch, batch_id)
        finally:
            with self._lock:
                self._writing = False

    def _write(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        spark = batch.sparkSession
        pending = {name: sink for name, sink in self.config.sinks.items() if not sink.written(spark, batch_id)}
        if not pending:
            self.emit(f"batch {batch_id}: written before a restart, skipped")
            return
        parsed = batch.transform(parse_json(max_bytes=self.config.max_payload_bytes))
        # Counted on the way through the output's write when its sink reports Spark's observed
        # metrics, so that a batch without rejected rows (the usual case) is read and parsed
        # once. Another sink gets the parsed batch kept in memory, and the counts come from it.
        observing = OUTPUT not in pending or pending[OUTPUT].observes_writes
        if not observing:
            parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            written, quarantined, metrics = self._write_sinks(parsed, pending, batch_id, observing)
        finally:
            if not observing:
                parsed.unpersist()
        seconds = time.monotonic() - started
        with self._lock:
            self.summary.batches += 1
            self.summary.written += written or 0
            self.summary.quarantined += quarantined or 0
            self.summary.add_metrics(metrics)
        rows_done = (written or 0) + (quarantined or 0)
        self.emit(
            f"batch {batch_id}: {rows_done} rows in {seconds:.2f}s ({rows_done / max(seconds, 1e-9):,.0f} rows/s): "
            f"{'-' if written is None else written} written, {quarantined} quarantined{metrics_text(metrics)}"
        )

    def _write_sinks(
        self, parsed: DataFrame, pending: Mapping[str, Sink], batch_id: int, observing: bool
    ) -> Tuple[Optional[int], Optional[int], Dict[str, int]]:
        """Write the batch to the ``pending`` sinks: (rows written, rows quarantined, metrics)."""
        written = quarantined = None
        metrics: Dict[str, int] = {}
        if OUTPUT in pending:
            counted, counts = _counter(
                parsed, f"parsed-{batch_id}", observing,
                valid=F.count(F.when(F.col(ERROR_COLUMN).isNull(), 1)), rejected=F.count(F.col(ERROR_COLUMN)),
            )
            counters: List[Callable[[], Dict[str, int]]] = []
            rows = self._transformed(counted.transform(valid_records()), counters, batch_id, observing)
            marked = ERROR_COLUMN in rows.columns  # a transform rejected rows too
            rejected_later: Callable[[], Dict[str, int]] = lambda: {"rejected": 0}  # noqa: E731
            if marked:
                rows, rejected_later = _counter(rows, f"marked-{batch_id}", observing, rejected=F.count(F.col(ERROR_COLUMN)))
            # Transforms that drop rows make the sink count what it writes itself.
            known = (lambda: counts()["valid"]) if self.keeps_rows and not marked else None
            written = pending[OUTPUT].write_batch(rows.transform(valid_records()), batch_id, known)
            quarantined = counts()["rejected"] + rejected_later()["rejected"]
            metrics = {label: value for counter in counters for label, value in counter().items()}
        if QUARANTINE in pending and quarantined == 0:
            pending[QUARANTINE].skip_batch(parsed.sparkSession, batch_id)
        elif QUARANTINE in pending:
            quarantined = pending[QUARANTINE].write_batch(self._rejected(parsed, batch_id), batch_id)
        return written, quarantined, metrics

    def _transformed(
        self,
        valid: DataFrame,
        counters: Optional[List[Callable[[], Dict[str, int]]]] = None,
        batch_id: int = 0,
        observing: bool = True,
    ) -> DataFrame:
        """The configured transforms applied to ``valid``; with ``counters``, each transform's
        metrics counted on its input and their reader appended there."""
        for index, transform in enumerate(self._transforms):
            metrics = getattr(transform, "metrics", None)
            if metrics is not None and counters is not None:
                valid, counter = _counter(valid, f"metrics-{batch_id}-{index}", observing, **metrics(valid))
                counters.append(counter)
            valid = valid.transform(transform)
        return valid

    def _rejected(self, parsed: DataFrame, batch_id: int) -> DataFrame:
        """The batch's rows for the quarantine: the parse's rejects, then those the transforms
        rejected, in the same columns."""
        rejected = parsed.transform(quarantined_records())
        transformed = self._transformed(parsed.transform(valid_records()))
        if ERROR_COLUMN not in transformed.columns:
            return rejected
        later = transformed.transform(quarantined_records())
        return rejected.unionByName(later.select(*[name for name in rejected.columns if name in later.columns]), allowMissingColumns=True)


def _counter(df: DataFrame, name: str, observing: bool, **columns: Column) -> Tuple[DataFrame, Callable[[], Dict[str, int]]]:
    """``df`` and a reader of the aggregates ``columns`` over it: observed on the way through
    the next action on ``df`` (``observing``), or computed by an aggregation of their own
    (for a ``df`` kept in memory). The reader computes once."""
    aliased = [column.alias(label) for label, column in columns.items()]
    if observing:
        observation = Observation(name)
        df = df.observe(observation, *aliased)
        read = lambda: observation.get  # noqa: E731
    else:
        read = lambda: df.agg(*aliased).first().asDict()  # noqa: E731
    values: Dict[str, int] = {}

    def counts() -> Dict[str, int]:
        if not values:
            values.update({label: int(value) for label, value in read().items()})
        return values

    return df, counts


class SinkWriter:
    """The ``foreachBatch`` function of a query whose rows are ready (a stateful pipeline's):
    write them to one sink, idempotently by batch id, and report one line."""

    def __init__(self, name: str, sink: Sink, summary: RunSummary, emit: Callable[[str], None], lock: threading.Lock):
        self.name = name
        self.sink = sink
        self.summary = summary
        self.emit = emit
        self._lock = lock

    def __call__(self, rows: DataFrame, batch_id: int) -> None:
        if self.sink.written(rows.sparkSession, batch_id):
            self.emit(f"{self.name} batch {batch_id}: written before a restart, skipped")
            return
        started = time.monotonic()
        count = self.sink.write_batch(rows, batch_id)
        with self._lock:
            if self.name == OUTPUT:
                self.summary.batches += 1
                self.summary.written += count
            else:
                self.summary.quarantined += count
        self.emit(f"{self.name} batch {batch_id}: {count} rows in {time.monotonic() - started:.2f}s")


def run_pipeline(
    spark: SparkSession,
    config: PipelineConfig,
    emit: Callable[[str], None] = print,
    stop_event: Optional[threading.Event] = None,
) -> RunSummary:
    """Run the pipeline until the trigger ends it (``available-now``, ``once``) or ``stop_event``
    is set, printing a line per micro-batch with ``emit``. A failed query raises.

    >>> run_pipeline(get_spark(), load_pipeline_config()).line()  # doctest: +SKIP
    'done: 20 rows written, 0 quarantined in 9.8s'
    """
    if config.stateful:
        return _run_stateful(spark, config, emit, stop_event)
    started = time.monotonic()
    claim_checkpoint(config.checkpoint, config.sinks)
    config.source.check()
    writer = BatchWriter(config, emit)
    query = (
        config.source.read_stream(spark)
        .writeStream.queryName(config.app_name)
        .foreachBatch(writer)
        .trigger(**spark_trigger(config.trigger))
        .option("checkpointLocation", config.checkpoint)
        .start()
    )
    try:
        _await(query, stop_event)
    finally:
        writer.stop_between_batches(STOP_GRACE_SECONDS)
        if query.isActive:
            query.stop()
    error = query.exception()
    if error is not None and not (writer.stopping and "StopRequested" in str(error)):
        raise error
    writer.summary.seconds = time.monotonic() - started
    return writer.summary


def _run_stateful(
    spark: SparkSession, config: PipelineConfig, emit: Callable[[str], None], stop_event: Optional[threading.Event]
) -> RunSummary:
    """Two queries on the stream: the transformed valid rows (append mode: a window once it is
    final) to the output, the rejected rows to the quarantine; each has its own checkpoint."""
    started = time.monotonic()
    checkpoints = {name: os.path.join(config.checkpoint, name) for name in config.sinks}
    for name, sink in config.sinks.items():
        claim_checkpoint(checkpoints[name], {name: sink})
    config.source.check()
    parsed = config.source.read_stream(spark).transform(parse_json(max_bytes=config.max_payload_bytes))
    rows = parsed.transform(valid_records())
    for spec in config.transforms:
        rows = rows.transform(spec.build())
    streams = {OUTPUT: rows, QUARANTINE: parsed.transform(quarantined_records())}
    summary, lock = RunSummary(), threading.Lock()
    queries = [
        stream.writeStream.queryName(f"{config.app_name}-{name}")
        .outputMode("append")
        .foreachBatch(SinkWriter(name, config.sinks[name], summary, emit, lock))
        .trigger(**spark_trigger(config.trigger))
        .option("checkpointLocation", checkpoints[name])
        .start()
        for name, stream in streams.items()
    ]
    try:
        while any(query.isActive for query in queries) and not (stop_event is not None and stop_event.is_set()):
            failed = [query.exception() for query in queries if query.exception() is not None]
            if failed:
                raise failed[0]
            time.sleep(0.2)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
    failed = [query.exception() for query in queries if query.exception() is not None]
    if failed:
        raise failed[0]
    summary.seconds = time.monotonic() - started
    return summary


# How long a stop waits for the batch being written before it interrupts it.
STOP_GRACE_SECONDS = 60.0


def _await(query: StreamingQuery, stop_event: Optional[threading.Event]) -> None:
    while query.isActive and not (stop_event is not None and stop_event.is_set()):
        query.awaitTermination(0.2)
