"""The Kafka sink: each row as a JSON object to a topic, keyed by a column (``id``).

Written with Spark's batch Kafka writer inside the micro-batch, with the connection and
security settings of the ``kafka`` section (``pipeline_lib.kafka_client.spark_options``).

Kafka offers Spark no transaction, so this sink is at-least-once: a micro-batch interrupted
after some of its records were sent is sent again in full when the query resumes, and those
records appear twice on the topic, with the same key and value. A reader that needs each row
once keeps the last record per key (a compacted topic does the same on the broker).
"""

from __future__ import annotations

from pydantic import field_validator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline_lib.errors import PipelineError
from pipeline_lib.kafka_client import KafkaSettings, spark_options, topic_name
from pipeline_lib.sinks.base import Sink, SinkOptions, register_sink


class KafkaSinkOptions(SinkOptions):
    topic: str
    key: str = "id"  # the column whose value becomes the record key

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        return topic_name(value)


@register_sink("kafka")
class KafkaSink(Sink):
    Options = KafkaSinkOptions
    options: KafkaSinkOptions
    uses_kafka = True

    def __init__(self, options: KafkaSinkOptions, kafka: KafkaSettings):
        super().__init__(options)
        self.kafka = kafka

    def describe(self) -> str:
        return f"kafka topic {self.options.topic}"

    def write(self, rows: DataFrame, batch_id: int) -> None:
        if self.options.key not in rows.columns:
            raise PipelineError(
                f"key column {self.options.key!r} is not in the rows to write; they have {rows.columns}"
            )
        records = rows.select(
            F.col(self.options.key).cast("string").alias("key"),
            F.to_json(F.struct(*rows.columns)).alias("value"),
        )
        records.write.format("kafka").options(**spark_options(self.kafka)).option("topic", self.options.topic).save()
