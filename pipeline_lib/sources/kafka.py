"""The Kafka source: a topic read with Spark's Kafka connector."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta, timezone
from typing import Any, Dict, Literal, Optional, Tuple

from pydantic import PositiveFloat, PositiveInt, field_validator, model_validator
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, DataFrameReader, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamReader

from pipeline_lib.config import Settings
from pipeline_lib.errors import PipelineError
from pipeline_lib.kafka_client import KafkaSettings, earliest_offsets, spark_options, topic_exists
from pipeline_lib.reports import PartitionOffsets, offsets_text
from pipeline_lib.sources.base import Source, register_source

LINEAGE_COLUMNS = ("topic", "partition", "offset", "kafka_timestamp", "headers")


class TopicNotFoundError(PipelineError):
    """The Kafka topic to read does not exist."""


class ConnectorMissingError(PipelineError):
    """Spark was started without the Kafka connector's jars."""


class DataLossError(PipelineError):
    """Offsets the job was still to read are no longer on the topic: Kafka's retention deleted
    them while the job was stopped, or as it fell behind."""


# Epoch milliseconds below this are before 1973: epoch seconds given by mistake.
_FIRST_MILLISECONDS = 10**11
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_milliseconds(value: Any) -> int:
    """``value``, epoch milliseconds or an ISO-8601 time (UTC unless it names its zone), as epoch
    milliseconds; a ValueError saying what is accepted otherwise.

    >>> epoch_milliseconds("2024-05-08T15:20:00.123Z"), epoch_milliseconds("1715181600123")
    (1715181600123, 1715181600123)
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < _FIRST_MILLISECONDS:
            seconds = f"; epoch seconds? give {value * 1000}" if value > 0 else ""
            raise ValueError(f"{value} is not epoch milliseconds (that would be before 1973){seconds}")
        return value
    moment = value
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            moment = None
    elif isinstance(value, date) and not isinstance(value, datetime):
        moment = datetime(value.year, value.month, value.day)  # YAML reads 2024-05-08 as a date
    if not isinstance(moment, datetime):
        raise ValueError(f"{value!r} is neither epoch milliseconds nor an ISO-8601 time such as 2024-05-08T15:20:00Z")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class KafkaSourceOptions(Settings):
    starting_offsets: str = "earliest"  # earliest, latest, or Spark's JSON of offsets
    max_offsets_per_trigger: Optional[PositiveInt] = None
    # Where a new checkpoint starts instead of starting_offsets: in each partition, the first
    # record whose Kafka timestamp is at or after this (epoch ms); a resumed one goes on from its offsets.
    starting_timestamp: Optional[int] = None
    # Offsets a resumed checkpoint was still to read but Kafka's retention deleted: stop, or skip them.
    on_data_loss: Literal["fail", "skip"] = "fail"
    fail_on_data_loss: Optional[bool] = None  # the older spelling of on_data_loss: false is skip
    connect_timeout: PositiveFloat = 30.0  # seconds to reach the broker before the query starts
    # Seconds a request of the running query (the driver's offsets, the executors' fetches) waits
    # before it is tried again. With a broker lost, the driver's admin client waits this long on
    # it before it learns the new leader: Kafka's default (60 s) would stall the stream a minute.
    request_timeout: PositiveFloat = 15.0
    # Records of aborted transactions (a producer killed half-way) are never read.
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    # The records' Kafka headers (a trace id) in the output's columns too; the quarantine always has them.
    include_headers: bool = False

    @field_validator("starting_offsets")
    @classmethod
    def _offsets(cls, value: str) -> str:
        if value not in ("earliest", "latest") and not value.lstrip().startswith("{"):
            raise ValueError(f"unknown value {value!r}; allowed: earliest, latest, or Spark's JSON of offsets")
        return value

    @field_validator("starting_timestamp", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> Optional[int]:
        return None if value is None else epoch_milliseconds(value)

    @model_validator(mode="after")
    def _one_data_loss_setting(self) -> "KafkaSourceOptions":
        if self.fail_on_data_loss is not None and "on_data_loss" in self.model_fields_set:
            if self.skips_lost_offsets == self.fail_on_data_loss:
                raise ValueError(
                    f"on_data_loss: {self.on_data_loss} contradicts fail_on_data_loss "
                    f"{str(self.fail_on_data_loss).lower()}; give on_data_loss only"
                )
        return self

    @property
    def skips_lost_offsets(self) -> bool:
        """Whether offsets deleted before they were read are skipped (``on_data_loss: skip``)."""
        if "on_data_loss" not in self.model_fields_set and self.fail_on_data_loss is not None:
            return not self.fail_on_data_loss
        return self.on_data_loss == "skip"


@register_source("kafka")
class KafkaSource(Source):
    """``value`` (the payload bytes), ``topic``, ``partition``, ``offset``, Kafka's own
    timestamp as ``kafka_timestamp``, so it cannot clash with a record's ``timestamp`` field, and
    the record's Kafka ``headers`` as JSON text, ``[{"key": "trace_id", "value": "4bf92f"}]`` (values
    as UTF-8; null for a record without headers)."""

    Options = KafkaSourceOptions
    options: KafkaSourceOptions
    uses_kafka = True

    def __init__(self, options: KafkaSourceOptions, kafka: KafkaSettings):
        super().__init__(options)
        self.kafka = kafka

    def describe(self) -> str:
        return f"topic {self.kafka.topic}"

    @property
    def output_columns(self) -> Tuple[str, ...]:
        return ("headers",) if self.options.include_headers else ()

    def check(self) -> None:
        # Spark's Kafka client retries an unreachable broker or bad credentials without end,
        # and reports a missing topic as a stack trace: ask once, bounded, and say why.
        if not topic_exists(self.kafka, self.options.connect_timeout):
            raise TopicNotFoundError(
                f"topic {self.kafka.topic!r} does not exist on {self.kafka.bootstrap_servers}; "
                "jobs/produce.py creates it, or check --topic"
            )

    def offsets_lost(self, checkpoint: str) -> Tuple[PartitionOffsets, ...]:
        """The offsets the query of ``checkpoint`` was to read next that the topic no longer holds
        (Kafka's retention deleted them while the job was stopped), per partition, from the
        checkpoint's position to the partition's earliest offset now; with ``on_data_loss: fail``
        a :class:`DataLossError` naming them. A new checkpoint has none."""
        position = _resume_position(checkpoint)
        if not position:
            return ()
        earliest = earliest_offsets(self.kafka, self.options.connect_timeout)
        lost = tuple(
            PartitionOffsets(topic, partition, offset, earliest[partition])
            for (topic, partition), offset in sorted(position.items())
            if topic == self.kafka.topic and earliest.get(partition, offset) > offset
        )
        if lost and not self.options.skips_lost_offsets:
            raise DataLossError(
                f"Kafka's retention deleted offsets of topic {self.kafka.topic} that checkpoint {checkpoint} "
                f"had not read: {offsets_text(lost)}; --on-data-loss skip (source.on_data_loss: skip) "
                "goes on from the earliest offsets left"
            )
        return lost

    def read_stream(self, spark: SparkSession) -> DataFrame:
        reader = self._starting(self._configure(spark.readStream))
        if self.options.max_offsets_per_trigger:
            reader = reader.option("maxOffsetsPerTrigger", str(self.options.max_offsets_per_trigger))
        return self._load(reader)

    def read_batch(self, spark: SparkSession) -> DataFrame:
        """Every record on the topic now (from ``starting_offsets``, or ``starting_timestamp``, to
        the latest), once."""
        return self._load(self._starting(self._configure(spark.read)).option("endingOffsets", "latest"))

    def _configure(self, reader):
        request_timeout_ms = str(int(self.options.request_timeout * 1000))
        return (
            reader.format("kafka")
            .options(**spark_options(self.kafka))
            .option("subscribe", self.kafka.topic)
            .option("failOnDataLoss", str(not self.options.skips_lost_offsets).lower())
            .option("kafka.isolation.level", self.options.isolation_level)
            .option("includeHeaders", "true")
            .option("kafka.request.timeout.ms", request_timeout_ms)
            .option("kafka.default.api.timeout.ms", request_timeout_ms)
        )

    def _starting(self, reader):
        if self.options.starting_timestamp is None:
            return reader.option("startingOffsets", self.options.starting_offsets)
        # Spark's startingTimestamp takes the place of startingOffsets. A partition with no record
        # at or after it starts at its end ("latest"), so records that arrive later are read;
        # Spark's default strategy would stop the query instead.
        return reader.option("startingTimestamp", str(self.options.starting_timestamp)).option(
            "startingOffsetsByTimestampStrategy", "latest"
        )

    def _load(self, reader: "DataFrameReader | DataStreamReader") -> DataFrame:
        try:
            raw = reader.load()
        except AnalysisException as error:
            if "Failed to find data source: kafka" in str(error):
                raise ConnectorMissingError(
                    "Spark has no Kafka connector: run `make jars` in the project, or set "
                    "PIPELINE_JARS to a folder of the connector's jars (spark-submit: --jars)"
                ) from error
            raise
        # Text, so that every sink writes them (CSV takes no arrays); a list, as a key may repeat.
        headers = F.to_json(F.transform("headers", _header_as_text))
        return raw.select(
            "value", *LINEAGE_COLUMNS[:3], F.col("timestamp").alias("kafka_timestamp"), headers.alias("headers")
        )


def _header_as_text(header: Column) -> Column:
    return F.struct(header["key"], header["value"].cast("string").alias("value"))


# The opening words of Spark's failOnDataLoss errors (its KAFKA_DATA_LOSS error condition),
# whose "Reason:" names the topic partition and offsets.
_SPARK_DATA_LOSS = "Some data may have been lost because they are not available in Kafka any more"


def data_loss_error(error: BaseException) -> Optional[DataLossError]:
    """Spark's own error for records that went while its query ran (the job fell behind the
    topic's retention) as a one-line :class:`DataLossError` caused by it; None for another error."""
    text = str(error)
    if _SPARK_DATA_LOSS not in text:
        return None
    reason = text.split(_SPARK_DATA_LOSS, 1)[1].partition("Reason:")[2].strip().splitlines()
    lost = DataLossError(
        "Kafka no longer holds records this job was to read (deleted by retention, or with the topic): "
        f"{reason[0] if reason else 'Spark gives no reason'}; --on-data-loss skip (source.on_data_loss: skip) "
        "goes on from the earliest offsets left"
    )
    lost.__cause__ = error
    return lost


def _resume_position(checkpoint: str) -> Dict[Tuple[str, int], int]:
    """Where the query of ``checkpoint`` goes on reading, by (topic, partition): the end of its
    last committed batch (a batch planned after it is replayed from there), or the start of its
    first batch when none was committed. Empty for a new checkpoint, and for one that is not on
    the local file system."""
    if "://" in checkpoint:
        return {}
    committed = _batch_ids(os.path.join(checkpoint, "commits"))
    if committed:
        return _offsets_in(os.path.join(checkpoint, "offsets", str(max(committed))))
    if _batch_ids(os.path.join(checkpoint, "offsets")):
        return _offsets_in(os.path.join(checkpoint, "sources", "0", "0"))  # the query's first offsets
    return {}


def _batch_ids(folder: str) -> Tuple[int, ...]:
    return tuple(int(name) for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else ()


def _offsets_in(path: str) -> Dict[Tuple[str, int], int]:
    """The Kafka offsets (``{"topic": {"0": 20}}``) of a file of Spark's offset logs; its other
    lines (the version, the batch's metadata) are not of that shape."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().replace("\x00", "").splitlines()
    except OSError:
        return {}
    found: Dict[Tuple[str, int], int] = {}
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value and all(isinstance(parts, dict) for parts in value.values()):
            for topic, partitions in value.items():
                for partition, offset in partitions.items():
                    if str(partition).isdigit() and isinstance(offset, int):
                        found[(topic, int(partition))] = offset
    return found
