"""The Kafka source: a topic read with Spark's Kafka connector."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import PositiveFloat, PositiveInt, field_validator
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, DataFrameReader, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamReader

from pipeline_lib.config import Settings
from pipeline_lib.errors import PipelineError
from pipeline_lib.kafka_client import KafkaSettings, spark_options, topic_exists
from pipeline_lib.sources.base import Source, register_source

LINEAGE_COLUMNS = ("topic", "partition", "offset", "kafka_timestamp")


class TopicNotFoundError(PipelineError):
    """The Kafka topic to read does not exist."""


class ConnectorMissingError(PipelineError):
    """Spark was started without the Kafka connector's jars."""


class KafkaSourceOptions(Settings):
    starting_offsets: str = "earliest"  # earliest, latest, or Spark's JSON of offsets
    max_offsets_per_trigger: Optional[PositiveInt] = None
    fail_on_data_loss: bool = True
    connect_timeout: PositiveFloat = 30.0  # seconds to reach the broker before the query starts
    # Records of aborted transactions (a producer killed half-way) are never read.
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"

    @field_validator("starting_offsets")
    @classmethod
    def _offsets(cls, value: str) -> str:
        if value not in ("earliest", "latest") and not value.lstrip().startswith("{"):
            raise ValueError(f"unknown value {value!r}; allowed: earliest, latest, or Spark's JSON of offsets")
        return value


@register_source("kafka")
class KafkaSource(Source):
    """``value`` (the payload bytes), ``topic``, ``partition``, ``offset`` and Kafka's own
    timestamp as ``kafka_timestamp``, so it cannot clash with a record's ``timestamp`` field."""

    Options = KafkaSourceOptions
    options: KafkaSourceOptions
    uses_kafka = True

    def __init__(self, options: KafkaSourceOptions, kafka: KafkaSettings):
        super().__init__(options)
        self.kafka = kafka

    def describe(self) -> str:
        return f"topic {self.kafka.topic}"

    def check(self) -> None:
        # Spark's Kafka client retries an unreachable broker or bad credentials without end,
        # and reports a missing topic as a stack trace: ask once, bounded, and say why.
        if not topic_exists(self.kafka, self.options.connect_timeout):
            raise TopicNotFoundError(
                f"topic {self.kafka.topic!r} does not exist on {self.kafka.bootstrap_servers}; "
                "jobs/produce.py creates it, or check --topic"
            )

    def read_stream(self, spark: SparkSession) -> DataFrame:
        reader = self._configure(spark.readStream).option("startingOffsets", self.options.starting_offsets)
        if self.options.max_offsets_per_trigger:
            reader = reader.option("maxOffsetsPerTrigger", str(self.options.max_offsets_per_trigger))
        return self._load(reader)

    def read_batch(self, spark: SparkSession) -> DataFrame:
        """Every record on the topic now (from ``starting_offsets`` to the latest), once."""
        reader = self._configure(spark.read).option("startingOffsets", self.options.starting_offsets)
        return self._load(reader.option("endingOffsets", "latest"))

    def _configure(self, reader):
        return (
            reader.format("kafka")
            .options(**spark_options(self.kafka))
            .option("subscribe", self.kafka.topic)
            .option("failOnDataLoss", str(self.options.fail_on_data_loss).lower())
            .option("kafka.isolation.level", self.options.isolation_level)
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
        return raw.select("value", *LINEAGE_COLUMNS[:3], F.col("timestamp").alias("kafka_timestamp"))
