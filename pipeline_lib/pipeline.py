"""Compose source -> parse_json -> transforms -> sinks from a configuration, as one query.

One streaming query reads the source once per micro-batch. Each batch is parsed once on its way
to the ``output`` sink (the valid rows, after the configured transforms), counting the rejected
rows as it goes; only a batch that has rejected rows is read a second time, for the
``quarantine`` sink (the rejected rows with their reason). Both writes are idempotent
by batch id (see ``pipeline_lib.sinks.files``), and Spark commits the batch in the checkpoint
only after both returned: a batch interrupted anywhere is replayed with the same id and rows.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from pydantic import PositiveInt
from pyspark.sql import DataFrame, Observation, SparkSession
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
    output = build_sink({**DEFAULT_OUTPUT, **sections.output}, kafka, OUTPUT)
    quarantine = build_sink({**DEFAULT_QUARANTINE, **sections.quarantine}, kafka, QUARANTINE)
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
    return PipelineConfig(
        kafka=kafka,
        source=source,
        transforms=_transform_specs(sections.transforms),
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


@dataclass
class RunSummary:
    """What one run did: batches, rows written to the output and quarantined."""

    batches: int = 0
    written: int = 0
    quarantined: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return f"done: {self.written} rows written, {self.quarantined} quarantined in {self.seconds:.1f}s"


class BatchWriter:
    """The ``foreachBatch`` function: parse once, write every sink, report one line."""

    def __init__(self, config: PipelineConfig, emit: Callable[[str], None]):
        self.config = config
        self.emit = emit
        self.summary = RunSummary()
        self._transforms = [spec.build() for spec in config.transforms]
        self.keeps_rows = all(getattr(transform, "keeps_rows", False) for transform in self._transforms)
        self._lock = threading.Lock()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        spark = batch.sparkSession
        pending = {name: sink for name, sink in self.config.sinks.items() if not sink.written(spark, batch_id)}
        if not pending:
            self.emit(f"batch {batch_id}: written before a restart, skipped")
            return
        parsed = batch.transform(parse_json(max_bytes=self.config.max_payload_bytes))
        written = quarantined = None
        if OUTPUT in pending:
            # Counted on the way through the output's write, so a batch without rejected rows
            # (the usual case) reads and parses the source once.
            counts = Observation(f"parsed-{batch_id}")
            observed = parsed.observe(
                counts,
                F.count(F.when(F.col(ERROR_COLUMN).isNull(), 1)).alias("valid"),
                F.count(F.col(ERROR_COLUMN)).alias("rejected"),
            )
            # Transforms that drop rows make the sink count what it writes itself.
            known = (lambda: int(counts.get["valid"])) if self.keeps_rows else None
            written = pending[OUTPUT].write_batch(self._valid(observed), batch_id, known)
            quarantined = int(counts.get["rejected"])
        if QUARANTINE in pending and quarantined == 0:
            pending[QUARANTINE].skip_batch(batch_id)
        elif QUARANTINE in pending:
            quarantined = pending[QUARANTINE].write_batch(parsed.transform(quarantined_records()), batch_id)
        seconds = time.monotonic() - started
        with self._lock:
            self.summary.batches += 1
            self.summary.written += written or 0
            self.summary.quarantined += quarantined or 0
        rows = (written or 0) + (quarantined or 0)
        self.emit(
            f"batch {batch_id}: {rows} rows in {seconds:.2f}s ({rows / max(seconds, 1e-9):,.0f} rows/s): "
            f"{'-' if written is None else written} written, {quarantined} quarantined"
        )

    def _valid(self, parsed: DataFrame) -> DataFrame:
        valid = parsed.transform(valid_records())
        for transform in self._transforms:
            valid = valid.transform(transform)
        return valid


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
        if query.isActive:
            query.stop()
    writer.summary.seconds = time.monotonic() - started
    return writer.summary


def _await(query: StreamingQuery, stop_event: Optional[threading.Event]) -> None:
    while query.isActive:
        if stop_event is not None and stop_event.is_set():
            return
        query.awaitTermination(0.5)
    if query.exception() is not None:
        raise query.exception()
