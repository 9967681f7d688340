"""The Kafka sink: each row as a JSON object to a topic, keyed by a column (``id``).

Every column is in every record, null where empty, as in the JSON-lines sink. A row without an
id (the quarantine's) is keyed by several columns joined with ``-``: where it was read,
``<topic>-<partition>-<offset>``.

Written with Spark's batch Kafka writer inside the micro-batch, with the connection and
security settings of the ``kafka`` section (``pipeline_lib.kafka_client.spark_options``). In
real-time mode (``pipeline_lib.realtime``) Spark's streaming writer sends the same records.

Kafka offers Spark no transaction, so this sink is at-least-once: a micro-batch interrupted
after some of its records were sent is sent again in full when the query resumes, and those
records appear twice on the topic, with the same key and value. A reader that needs each row
once keeps the last record per key (a compacted topic does the same on the broker).
"""

from __future__ import annotations

from typing import Any, Mapping, Tuple

from pydantic import Field, field_validator
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline_lib.config import comma_separated
from pipeline_lib.errors import PipelineError
from pipeline_lib.kafka_client import KafkaSettings, spark_options, topic_name
from pipeline_lib.schema import column_named
from pipeline_lib.sinks.base import Sink, SinkOptions, register_sink


class KafkaSinkOptions(SinkOptions):
    topic: str
    # The column(s) whose values become the record key, joined by "-": "id", or "topic,partition,offset".
    key: Tuple[str, ...] = Field("id", validate_default=True)

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        return topic_name(value)

    @field_validator("key", mode="before")
    @classmethod
    def _comma_separated_key(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("key")
    @classmethod
    def _some_key(cls, names: Tuple[str, ...]) -> Tuple[str, ...]:
        if not names:
            raise ValueError("names no column")
        return names


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
        fields = {name: column_named(name) for name in rows.columns}
        records = rows.select(self.key_of(fields).alias("key"), self.value_of(fields).alias("value"))
        records.write.format("kafka").options(**spark_options(self.kafka)).option("topic", self.options.topic).save()

    def key_of(self, fields: Mapping[str, Column]) -> Column:
        """The record key of a row of ``fields`` (name -> column); a key column that is not
        among them is a :class:`PipelineError` naming it."""
        missing = [name for name in self.options.key if name not in fields]
        if missing:
            raise PipelineError(f"key column {missing[0]!r} is not in the rows to write; they have {list(fields)}")
        keys = [fields[name].cast("string") for name in self.options.key]
        return keys[0] if len(keys) == 1 else F.concat_ws("-", *keys)

    @staticmethod
    def value_of(fields: Mapping[str, Column]) -> Column:
        """The record value: ``fields`` (name -> column) as one JSON object."""
        # Without it Spark leaves out null fields, and readers lose the column altogether.
        return F.to_json(
            F.struct(*[column.alias(name) for name, column in fields.items()]), {"ignoreNullFields": "false"}
        )
