"""Streaming sources: each returns a DataFrame of raw payloads in ``value`` plus lineage columns.

Sources know nothing of parsing or transforms. The Kafka source keeps the record coordinates
(``topic``, ``partition``, ``offset``) and Kafka's own timestamp as ``kafka_timestamp``, so it
cannot clash with the record's ``timestamp`` field.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline_lib.config import KafkaConfig, SourceConfig
from pipeline_lib.kafka_client import topic_exists


class TopicNotFoundError(RuntimeError):
    """The Kafka topic to read does not exist."""


def read_stream(spark: SparkSession, source: SourceConfig, kafka: KafkaConfig) -> DataFrame:
    """The streaming DataFrame that ``source`` describes.

    >>> raw = read_stream(spark, SourceConfig(type="kafka"), KafkaConfig())  # doctest: +SKIP
    >>> raw.columns  # doctest: +SKIP
    ['value', 'topic', 'partition', 'offset', 'kafka_timestamp']
    """
    readers = {"kafka": _kafka, "files": _files, "rate": _rate}
    return readers[source.type](spark, source, kafka)


def _kafka(spark: SparkSession, source: SourceConfig, kafka: KafkaConfig) -> DataFrame:
    # Spark's Kafka source retries an unreachable broker or bad credentials without end, and
    # reports a missing topic as a stack trace; ask once, bounded, and stop with the reason.
    if not topic_exists(kafka, source.connect_timeout):
        raise TopicNotFoundError(
            f"topic {kafka.topic!r} does not exist on {kafka.bootstrap_servers}; "
            "jobs/produce.py creates it, or check --topic"
        )
    reader = (
        spark.readStream.format("kafka")
        .options(**kafka.spark_options())
        .option("subscribe", kafka.topic)
        .option("startingOffsets", source.starting_offsets)
        .option("failOnDataLoss", str(source.fail_on_data_loss).lower())
    )
    if source.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(source.max_offsets_per_trigger))
    return reader.load().select(
        "value", "topic", "partition", "offset", F.col("timestamp").alias("kafka_timestamp")
    )


def _files(spark: SparkSession, source: SourceConfig, kafka: KafkaConfig) -> DataFrame:
    """Each line of each new file in ``source.path`` is one payload."""
    return spark.readStream.text(source.path).select(
        "value", F.col("_metadata.file_path").alias("source_file")
    )


def _rate(spark: SparkSession, source: SourceConfig, kafka: KafkaConfig) -> DataFrame:
    """Synthetic records in the producer's JSON form, for runs and benchmarks without a broker."""
    rate = spark.readStream.format("rate").option("rowsPerSecond", source.rows_per_second).load()
    record = F.struct(
        (F.col("value") + 1).alias("id"),
        (F.col("value") * 37 % 101).cast("int").alias("value"),
        (F.unix_micros("timestamp") / 1e6).alias("timestamp"),
    )
    return rate.select(F.to_json(record).alias("value"))
