"""Real-time mode: a Kafka-to-Kafka pipeline as one query whose tasks never stop reading.

Spark's real-time mode (``trigger(realTime=...)``) keeps one task running per Kafka partition,
which reads, transforms and writes each record as it arrives; the trigger's interval only says
how often Spark checkpoints (an epoch). It runs stateless queries from a source that supports it
(Kafka) to a sink that writes record by record (Kafka), in ``update`` mode, and never
``foreachBatch``: there is no micro-batch for the runner to hand to each sink.

So the parse and the steps run on the stream itself, on every row, and each row leaves as one
Kafka record routed by its ``topic`` column, in one query: a valid row to the output topic keyed
by its ``id``, a rejected one to the quarantine topic, with the columns and reason of the file
quarantine, keyed by where it was read (``<topic>-<partition>-<offset>``). The rejected rows go
through the steps with the parse's marks: a step that keeps rows only adds columns to them, an
expectation leaves them alone. The Kafka sink is at-least-once here as with micro-batches:
records an interrupted epoch sent are sent again by the next run, with the same keys.

Spark refuses what real-time mode cannot run only once the query starts; the plan refuses it
before (:func:`check_settings`, :func:`check_on_spark`), naming the setting to change. Each epoch
Spark commits becomes a :class:`~pipeline_lib.reports.BatchReport` (:class:`EpochReports`): the
rows read from the epoch's progress, the rows sent to each topic and the steps' metrics observed
on the stream itself (``observe``, which real-time mode runs), with no second query.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Dict, List, Mapping, Optional, Sequence, Set

from py4j.protocol import Py4JError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery
from pyspark.sql.types import StructType

from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.kafka_client import admin_client, spark_options
from pipeline_lib.pipeline import OUTPUT, QUARANTINE, PipelineConfig
from pipeline_lib.reports import BatchReport
from pipeline_lib.schema import column_named
from pipeline_lib.sinks.kafka import KafkaSink
from pipeline_lib.sources.kafka import KafkaSource
from pipeline_lib.steps import Step, Transform
from pipeline_lib.transforms import (
    ERROR_COLUMN,
    MARKER_COLUMNS,
    PAYLOAD_BASE64_COLUMN,
    PAYLOAD_COLUMN,
    quarantined_records,
)
from pipeline_lib.triggers import checkpoint_interval

ROUTED = "routed"  # the observation of the records sent to each topic
STEP_METRICS = "step-"  # + the step's index: the observation of its metrics
# The quarantine's columns that are the parse's marks under their own names (quarantined_records).
_RENAMED = {"payload": PAYLOAD_COLUMN, "payload_base64": PAYLOAD_BASE64_COLUMN, "reason": ERROR_COLUMN}
MIN_INTERVAL_SETTING = "spark.sql.streaming.realTimeMode.minBatchDuration"
_ALLOWLIST_PACKAGE = "org.apache.spark.sql.execution.streaming.runtime"


def check_settings(config: PipelineConfig, steps: Sequence[Step]) -> None:
    """What real-time mode needs of the configuration, told before Spark or the broker is asked:
    Kafka in and out, no limit per batch, and steps that keep no state and let rejected rows by."""
    source = _kafka_source(config)
    if source.options.max_offsets_per_trigger:
        raise ConfigError(
            "source.max_offsets_per_trigger",
            "real-time mode reads each record as it arrives, with no limit per batch; leave it unset",
        )
    for name, sink in config.sinks.items():
        if not isinstance(sink, KafkaSink):
            flags = "--format kafka --output-topic NAME" if name == OUTPUT else "--quarantine-topic NAME"
            raise ConfigError(
                f"{name}.format",
                f"real-time mode writes to Kafka only, not {sink.describe()}: give {name} format kafka and a topic "
                f"({flags}), or use a micro-batch trigger",
            )
    for index, step in enumerate(steps):
        if step.stateful:
            raise ConfigError(
                f"transforms[{index}]",
                f"{step.describe()} keeps state across batches, which real-time mode does not run; "
                "use a micro-batch trigger",
            )
        # The rejected rows go through the steps too, on their way to the quarantine: a step
        # may drop rows only if it is an expectation, which leaves the rows rejected before it.
        if not step.keeps_rows and step.name != "expect":
            raise ConfigError(
                f"transforms[{index}]",
                f"{step.describe()} may drop rows, and real-time mode runs the steps on the rejected rows too, "
                "which must reach the quarantine; use a micro-batch trigger",
            )


def check_on_spark(
    config: PipelineConfig, schema: StructType, parse: Transform, steps: Sequence[Step], spark: SparkSession
) -> None:
    """What only Spark and the broker tell: the interval is not below Spark's minimum; the steps,
    on the rows' schema, keep the columns the quarantine carries and plan to operators that
    real-time mode runs; on a local master, Spark has a task slot for each partition of the topic."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "a started SparkContext"
    minimum = jvm.org.apache.spark.network.util.JavaUtils.timeStringAsMs(spark.conf.get(MIN_INTERVAL_SETTING)) / 1000
    interval = checkpoint_interval(config.trigger)
    if interval < minimum:
        raise ConfigError(
            "trigger",
            f"the checkpoint interval of real-time mode is {minimum:g}s at least ({MIN_INTERVAL_SETTING}); "
            f"got {interval:g}s",
        )
    # Spark plans a streaming DataFrame only inside a started query, after the checkpoint is
    # written; an empty batch of the source's schema plans to the same operators, and Spark's
    # own allowlist of real-time operators judges them.
    source = _kafka_source(config).read_stream(spark)
    parsed = spark.createDataFrame(spark.sparkContext.emptyRDD(), source.schema).transform(parse)
    fields = _quarantine_fields(parsed, schema)
    allowed = _allowed_operators(spark)
    rows = parsed
    for index, step in enumerate(steps):
        where = f"transforms[{index}]"
        try:
            rows = _step(rows, index, step)
        except (PySparkException, ValueError, TypeError) as error:
            raise ConfigError(where, str(error).splitlines()[0]) from error
        refused = _refused(rows, allowed)
        if refused:
            raise ConfigError(
                where,
                f"{step.describe()} needs {', '.join(refused)}, which Spark does not run in real-time mode "
                "(a shuffle, a sort, an aggregation, a Python UDF); use a micro-batch trigger",
            )
        dropped = [column for column in fields.values() if column not in rows.columns]
        if dropped:
            raise ConfigError(
                where,
                f"{step.describe()} drops {', '.join(dropped)}, which the rejected rows carry to the quarantine "
                "through the steps in real-time mode; choose what the output writes with output.columns",
            )
    refused = _refused(_records(config, fields, rows), allowed)
    if refused:
        raise ConfigError("trigger", f"Spark does not run {', '.join(refused)} in real-time mode")
    _check_task_slots(config, spark)


def records(
    config: PipelineConfig, schema: StructType, parse: Transform, steps: Sequence[Step], source: DataFrame
) -> DataFrame:
    """The rows of ``source`` (the raw payloads and where they were read) parsed by ``parse``
    (of the records' ``schema``), through the steps, as Kafka records: ``key``, ``value`` (JSON)
    and the ``topic`` each goes to."""
    parsed = source.transform(parse)
    rows = parsed
    for index, step in enumerate(steps):
        rows = _step(rows, index, step)
    return _records(config, _quarantine_fields(parsed, schema), rows)


def kafka_writer(config: PipelineConfig, writer: DataStreamWriter) -> DataStreamWriter:
    """``writer`` sending the records to Kafka, each to the topic of its ``topic`` column."""
    return writer.format("kafka").options(**spark_options(config.kafka)).outputMode("update")


class EpochReports:
    """The report of each epoch a real-time query committed, from the query's progress: rows
    read (``numInputRows``), rows sent to the output and quarantine topics and the steps'
    metrics (observed on the stream). An epoch that a stop interrupted is not committed, has no
    progress and no report: the next run reads and sends it again."""

    def __init__(self) -> None:
        self._last = -1

    def new(self, query: StreamingQuery) -> List[BatchReport]:
        """The reports of the epochs committed since the last call."""
        try:
            recent = query.recentProgress
        except PySparkException:
            return []
        reports = []
        for progress in recent:
            epoch = json.loads(progress.json)
            if epoch["batchId"] > self._last:
                self._last = epoch["batchId"]
                reports.append(epoch_report(epoch))
        return reports


def epoch_report(progress: Mapping) -> BatchReport:
    """The report of one epoch from its progress, as Spark reports it (JSON).

    >>> epoch_report({"batchId": 3, "numInputRows": 12, "batchDuration": 5100,
    ...               "timestamp": "2024-05-08T15:20:00.000Z",
    ...               "observedMetrics": {"routed": {"written": 10, "quarantined": 2}}}).line()
    'batch 3: 12 rows in 5.10s (2 rows/s): 10 written, 2 quarantined'
    """
    observed: Mapping[str, Mapping[str, int]] = progress.get("observedMetrics") or {}
    routed = observed.get(ROUTED, {})
    steps = sorted((int(name[len(STEP_METRICS) :]), values) for name, values in observed.items() if name != ROUTED)
    seconds = progress.get("batchDuration", 0) / 1000
    started = datetime.fromisoformat(str(progress["timestamp"]).replace("Z", "+00:00")).timestamp()
    return BatchReport(
        progress["batchId"],
        rows_read=int(progress.get("numInputRows", 0)),
        written=int(routed.get("written", 0)),
        quarantined=int(routed.get("quarantined", 0)),
        seconds=seconds,
        metrics={label: int(value) for _, values in steps for label, value in values.items()},
        finished_at=started + seconds,
    )


def _kafka_source(config: PipelineConfig) -> KafkaSource:
    if not isinstance(config.source, KafkaSource):
        raise ConfigError(
            "source.type", f"real-time mode reads Kafka only, not {config.source.describe()}; use a micro-batch trigger"
        )
    return config.source


def _step(rows: DataFrame, index: int, step: Step) -> DataFrame:
    """``rows`` through ``step``, its metrics observed on the rows going in."""
    if step.metrics is not None:
        columns = [column.alias(label) for label, column in step.metrics(rows).items()]
        rows = rows.observe(f"{STEP_METRICS}{index}", *columns)
    return rows.transform(step)


def _quarantine_fields(parsed: DataFrame, schema: StructType) -> Dict[str, str]:
    """The quarantine's columns, those of the file quarantine, each with the column of the parsed
    rows it comes from."""
    return {name: _RENAMED.get(name, name) for name in parsed.transform(quarantined_records(schema)).columns}


def _records(config: PipelineConfig, fields: Mapping[str, str], rows: DataFrame) -> DataFrame:
    """``rows`` (parsed, through the steps) as Kafka records, with the records sent to each
    topic observed."""
    output, quarantine = config.output, config.quarantine
    assert isinstance(output, KafkaSink) and isinstance(quarantine, KafkaSink), "checked by check_settings"
    written = list(output.options.columns or [name for name in rows.columns if name not in MARKER_COLUMNS])
    missing = [name for name in written if name not in rows.columns]
    if missing:
        raise ConfigError("output.columns", f"columns {missing} are not in the rows; they have {rows.columns}")
    quarantined = list(quarantine.options.columns or fields)
    unknown = [name for name in quarantined if name not in fields]
    if unknown:
        raise ConfigError("quarantine.columns", f"columns {unknown} are not the quarantine's: {', '.join(fields)}")
    valid_fields = {name: column_named(name) for name in written}
    rejected_fields = {name: column_named(fields[name]) for name in quarantined}
    keys = {}
    for name, sink, sink_fields in ((OUTPUT, output, valid_fields), (QUARANTINE, quarantine, rejected_fields)):
        try:
            keys[name] = sink.key_of(sink_fields)
        except PipelineError as error:
            raise ConfigError(f"{name}.key", str(error)) from error
    valid = F.col(ERROR_COLUMN).isNull()
    routed = rows.select(
        F.when(valid, keys[OUTPUT]).otherwise(keys[QUARANTINE]).alias("key"),
        F.when(valid, output.value_of(valid_fields)).otherwise(quarantine.value_of(rejected_fields)).alias("value"),
        F.when(valid, F.lit(output.options.topic)).otherwise(F.lit(quarantine.options.topic)).alias("topic"),
    )
    return routed.observe(
        ROUTED,
        F.count_if(F.col("topic") == output.options.topic).alias("written"),
        F.count_if(F.col("topic") == quarantine.options.topic).alias("quarantined"),
    )


def _allowed_operators(spark: SparkSession) -> Optional[Set[str]]:
    """The physical operators Spark runs in real-time mode, from its own allowlist; None when
    this Spark keeps the list elsewhere (it then checks them when the query starts)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "a started SparkContext"
    try:
        allowlist = getattr(getattr(getattr(jvm, _ALLOWLIST_PACKAGE), "RealTimeModeAllowlist$"), "MODULE$")
        # Scala compiles the private set to a public accessor under this name (Spark 4.2).
        names = getattr(allowlist, f"{_ALLOWLIST_PACKAGE.replace('.', '$')}$RealTimeModeAllowlist$$allowedOperators")
        return set(str(names().mkString("\n")).splitlines())
    except Py4JError:
        return None


def _refused(df: DataFrame, allowed: Optional[Set[str]]) -> List[str]:
    """The operators of ``df``'s physical plan above its scan that ``allowed`` lacks, by their
    short names."""
    if allowed is None:
        return []
    refused: Set[str] = set()
    pending = [df._jdf.queryExecution().sparkPlan()]
    while pending:
        node = pending.pop()
        children = node.children()
        if children.isEmpty():
            continue  # the scan, standing for the Kafka source
        name = node.getClass().getName()
        if name not in allowed:
            refused.add(name.rsplit(".", 1)[-1])
        iterator = children.iterator()
        while iterator.hasNext():
            pending.append(iterator.next())
    return sorted(refused)


def _check_task_slots(config: PipelineConfig, spark: SparkSession) -> None:
    """Real-time mode keeps a task running for each partition for as long as an epoch lasts; a
    partition whose task finds no free slot is not read at all, and Spark says nothing of it.
    Only a local master's slots are known before the query starts (a cluster's come and go)."""
    context = spark.sparkContext
    if not (context.master or "").startswith("local"):
        return
    kafka = config.kafka
    admin = admin_client(kafka, _kafka_source(config).options.connect_timeout)
    try:
        described = admin.describe_topics([kafka.topic])
    finally:
        admin.close()
    partitions = sum(len(topic["partitions"]) for topic in described if topic["name"] == kafka.topic)
    if partitions > context.defaultParallelism:
        raise ConfigError(
            "trigger",
            f"real-time mode keeps a task running for each of the {partitions} partitions of topic {kafka.topic}, "
            f"and Spark ({context.master}) runs {context.defaultParallelism} at once: the others would never be "
            f"read; give Spark {partitions} cores (SPARK_MASTER=local[{partitions}], spark-submit --master "
            f"local[{partitions}]) or use a micro-batch trigger",
        )


def plan_line(config: PipelineConfig) -> str:
    """What ``--dry-run`` says of a real-time plan."""
    return (
        "  real-time: each record written as it arrives, one task per Kafka partition, a checkpoint every "
        f"{checkpoint_interval(config.trigger):g}s; valid and rejected records routed by topic; at-least-once"
    )
