"""The plan: a configuration checked against the world and built into what the run executes.

Making the plan checks that the sinks' folders and the checkpoint are folders, builds each
configured transform once as a typed step, applies the steps to the schema of the rows where
one of them needs Spark to check its options or keeps state, asks the source once whether it
can be read (the broker answers, the topic exists), and tells whether the checkpoint is new or
goes on with these sinks. It writes nothing and starts no query: ``jobs/stream.py --dry-run``
prints it and stops. Spark Declarative Pipelines' ``spark-pipelines dry-run`` is the model.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pyspark.errors import PySparkException
from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from pipeline_lib import realtime
from pipeline_lib.checkpoint import RESUMED, inspect_checkpoint
from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.pipeline import OUTPUT, QUARANTINE, PipelineConfig
from pipeline_lib.reports import PartitionOffsets, offsets_text
from pipeline_lib.schema import RECORD_SCHEMA, record_schema
from pipeline_lib.sinks import Sink
from pipeline_lib.steps import Step, Transform
from pipeline_lib.transforms import ERROR_COLUMN, MARKER_COLUMNS, quarantined_records, valid_records
from pipeline_lib.triggers import is_real_time, spark_trigger


@dataclass(frozen=True)
class Query:
    """One streaming query of the plan: its name, checkpoint and the sinks it writes."""

    name: str
    checkpoint: str
    sinks: Tuple[str, ...]
    checkpoint_state: str  # checkpoint.NEW or checkpoint.RESUMED


@dataclass(frozen=True)
class Plan:
    """What a run executes: the configuration, its transforms built as steps, its queries."""

    config: PipelineConfig
    steps: Tuple[Step, ...]
    queries: Tuple[Query, ...]
    # The parse stage (``parse_json`` as configured), applied to the stream: Spark parses each
    # micro-batch with it. The one the checks applied, so its columns are made once a run.
    parse: Transform
    schema: StructType = RECORD_SCHEMA  # of the records, read by Spark from the configuration's DDL
    offsets_lost: Tuple[PartitionOffsets, ...] = ()  # deleted before they were read; the run skips them

    @property
    def stateful(self) -> bool:
        """Whether a step keeps state across micro-batches: the steps then run on the stream,
        in one query per sink."""
        return any(step.stateful for step in self.steps)

    @property
    def keeps_rows(self) -> bool:
        """Whether every step keeps every row, so the output's count is the parse's."""
        return all(step.keeps_rows for step in self.steps)

    @property
    def sinks(self) -> Dict[str, Sink]:
        return self.config.sinks

    @property
    def trigger(self) -> Dict[str, Any]:
        return spark_trigger(self.config.trigger)

    @property
    def real_time(self) -> bool:
        """Whether the query runs in Spark's real-time mode (``pipeline_lib.realtime``)."""
        return is_real_time(self.config.trigger)

    def lines(self) -> List[str]:
        """The plan as ``--dry-run`` prints it."""
        config = self.config
        lines = [
            f"pipeline {config.app_name}",
            f"  source: {config.source.describe()} ({_options(config.source.options)})",
            f"  parse: JSON payloads of at most {config.max_payload_bytes} bytes; rejects to {QUARANTINE}",
            "  transforms:" if self.steps else "  transforms: none",
        ]
        if config.schema is not None:
            required = ", ".join(config.required) or "none"
            fields = ", ".join(f"{field.name} {field.dataType.simpleString()}" for field in self.schema.fields)
            lines.insert(3, f"  schema: {fields} (required: {required})")
        for index, step in enumerate(self.steps, 1):
            traits = [
                trait
                for trait, present in (
                    ("keeps rows", step.keeps_rows),
                    ("keeps state", step.stateful),
                    ("checked on the schema", step.checked_on_schema),
                    ("counted", step.metrics is not None),
                )
                if present
            ]
            lines.append(f"    {index}. {step.describe()}" + (f"  [{', '.join(traits)}]" if traits else ""))
        for name, sink in self.sinks.items():
            columns = f" (columns {', '.join(sink.options.columns)})" if sink.options.columns else ""
            lines.append(f"  {name}: {sink.describe()}{columns}")
        for query in self.queries:
            bound = "new" if query.checkpoint_state == "new" else f"resumed, bound to {', '.join(query.sinks)}"
            label = f"checkpoint of {query.name}" if len(self.queries) > 1 else "checkpoint"
            lines.append(f"  {label}: {query.checkpoint} ({bound})")
        queries = "one query" if len(self.queries) == 1 else f"{len(self.queries)} queries (a step keeps state)"
        if self.offsets_lost:
            lines.append(f"  skipped, deleted by retention before they were read: {offsets_text(self.offsets_lost)}")
        if self.real_time:
            lines.append(realtime.plan_line(config))
        lines.append(f"  trigger: {config.trigger}; {queries}")
        return lines


def make_plan(config: PipelineConfig, spark: Optional[SparkSession] = None) -> Plan:
    """Check ``config`` against the world and build its plan. A bad setting is a
    :class:`ConfigError` naming it; a source that cannot be read, or a checkpoint bound to other
    folders, the error saying so. ``spark`` (or the active session, or a new one) is started
    only when the configuration has a schema of its own, or a step or a sink's folders must be
    checked on the rows' schema, or the trigger is real-time (``pipeline_lib.realtime``).
    """
    _check_folders(config)
    schema = RECORD_SCHEMA if config.schema is None else _record_schema(config, spark)
    steps = tuple(_built(index, spec, schema) for index, spec in enumerate(config.transforms))
    parse = config.parse(schema)
    if is_real_time(config.trigger):
        realtime.check_settings(config, steps)
    # Settings first, the world after: a bad option is named even when the broker is down.
    partitioned = any(_partition_columns(sink) for sink in config.sinks.values())
    if config.schema is not None or partitioned or any(step.checked_on_schema or step.stateful for step in steps):
        config = _check_on_schema(config, schema, parse, steps, spark)
    config.source.check()
    if is_real_time(config.trigger):
        realtime.check_on_spark(config, schema, parse, steps, _session(config, spark))
    stateful = any(step.stateful for step in steps)
    # A stateful plan runs a query per sink, each with a checkpoint of its own under the one given.
    groups: List[Tuple[str, str, Tuple[str, ...]]] = (
        [(name, os.path.join(config.checkpoint, name), (name,)) for name in (OUTPUT, QUARANTINE)]
        if stateful
        else [(config.app_name, config.checkpoint, (OUTPUT, QUARANTINE))]
    )
    queries = tuple(
        Query(name, path, sinks, inspect_checkpoint(path, {sink: config.sinks[sink].location for sink in sinks}))
        for name, path, sinks in groups
    )
    # What a resumed checkpoint was still to read and the source no longer holds: an error, or
    # skipped and counted, as the source's options say (Kafka's on_data_loss).
    offsets_lost = tuple(
        dict.fromkeys(
            part
            for query in queries
            if query.checkpoint_state == RESUMED
            for part in config.source.offsets_lost(query.checkpoint)
        )
    )
    return Plan(config, steps, queries, parse, schema, offsets_lost)


def _built(index: int, spec, schema: StructType) -> Step:
    try:
        return spec.build(schema)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"transforms[{index}]", str(error)) from error


def _session(config: PipelineConfig, spark: Optional[SparkSession]) -> SparkSession:
    if spark is not None:
        return spark
    from pipeline_lib.session import get_spark

    return SparkSession.getActiveSession() or get_spark(config.app_name)


def _record_schema(config: PipelineConfig, spark: Optional[SparkSession]) -> StructType:
    """The configuration's schema as Spark's own DDL parser reads it."""
    _session(config, spark)
    try:
        return record_schema(str(config.schema))
    except (PySparkException, ValueError) as error:
        raise ConfigError("schema", str(error).splitlines()[0]) from error


def _partition_columns(sink: Sink) -> Tuple[str, ...]:
    return tuple(getattr(sink.options, "partition_by", None) or ())


def _check_folders(config: PipelineConfig) -> None:
    for name, sink in config.sinks.items():
        if sink.location and os.path.isfile(sink.location):
            raise ConfigError(f"{name}.path", f"{sink.location} is a file, not a folder")
    if os.path.isfile(config.checkpoint):
        raise ConfigError("checkpoint", f"{config.checkpoint} is a file, not a folder")


def _check_on_schema(
    config: PipelineConfig,
    schema: StructType,
    parse: Transform,
    steps: Tuple[Step, ...],
    spark: Optional[SparkSession],
) -> PipelineConfig:
    """Apply the parse and the steps to the schema of the source's rows: a bad option (SQL that
    does not parse, a column the rows lack) is then a :class:`ConfigError` naming the transform,
    a partition column the rows lack one naming the sink's ``partition_by``. Returns ``config``,
    its output given the default columns of a user's schema: its fields and what the steps add."""
    try:
        source = config.source.read_stream(_session(config, spark))
    except ConfigError:
        raise  # it names its own field
    except (PySparkException, PipelineError) as error:
        raise ConfigError("source", str(error).splitlines()[0]) from error
    try:
        parsed = source.transform(parse)
    except (PySparkException, ValueError) as error:
        raise ConfigError("schema", str(error).splitlines()[0]) from error
    rows = parsed.transform(valid_records())
    stateful = any(step.stateful for step in steps)
    for index, step in enumerate(steps):
        try:
            rows = rows.transform(step)
        except (PySparkException, ValueError, TypeError) as error:
            raise ConfigError(f"transforms[{index}]", str(error).splitlines()[0]) from error
        # A stateful pipeline writes its transformed rows as they come out of the state: rows
        # marked for the quarantine on the way would not be told apart there.
        if stateful and ERROR_COLUMN in rows.columns:
            raise ConfigError(
                f"transforms[{index}]",
                "a pipeline with a stateful transform cannot quarantine rows in its transforms; "
                "use on_violation drop or warn",
            )
    if config.schema is not None and not config.output.options.columns:
        lineage = [name for name in source.columns if name != "value"]
        written = [name for name in rows.columns if name not in lineage and name not in MARKER_COLUMNS]
        written += config.source.output_columns
        output = copy.copy(config.output)
        output.options = output.options.model_copy(update={"columns": tuple(written)})
        config = replace(config, output=output)
    _check_partitions(config, {OUTPUT: rows.columns, QUARANTINE: parsed.transform(quarantined_records(schema)).columns})
    return config


def _check_partitions(config: PipelineConfig, columns: Mapping[str, Sequence[str]]) -> None:
    """Each sink's partition columns are among the columns it writes, and leave some to write."""
    for name, sink in config.sinks.items():
        partition_by = _partition_columns(sink)
        written = sink.options.columns or [column for column in columns[name] if column not in MARKER_COLUMNS]
        unknown = [column for column in partition_by if column not in written]
        if unknown:
            raise ConfigError(
                f"{name}.partition_by", f"columns {unknown} are not in the rows it writes: {', '.join(written)}"
            )
        if partition_by and set(written) <= set(partition_by):
            raise ConfigError(f"{name}.partition_by", "leaves no column to write in the files")


def _options(options) -> str:
    values = options.model_dump(exclude_defaults=False)
    return ", ".join(f"{key}={value}" for key, value in values.items()) or "no options"
