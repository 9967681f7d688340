"""What every source is: its options, a check before any query starts, and how it reads.

A source returns raw payloads in ``value`` plus lineage columns of its own (Kafka's topic,
partition, offset and timestamp as ``kafka_timestamp``); it knows nothing of parsing or
transforms. Each source is one class in one module, registered by type name::

    @register_source("kafka")
    class KafkaSource(Source): ...

Another package adds its own through the entry-point group ``pipeline_lib.sources``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Type

from pyspark.sql import DataFrame, SparkSession

from pipeline_lib.config import ConfigError, Settings, parse
from pipeline_lib.kafka_client import KafkaSettings
from pipeline_lib.registry import Registry, UnknownNameError

SOURCES: Registry[Type["Source"]] = Registry("source", "pipeline_lib.sources")
register_source = SOURCES.register


class Source:
    """A streaming source. Subclasses set ``Options`` (a :class:`Settings` model) and
    implement :meth:`read_stream`; :meth:`read_batch` reads the same data once, for notebooks
    and backfills."""

    Options: ClassVar[Type[Settings]] = Settings
    # False for a source that never runs dry (synthetic data): it needs a processing-time trigger.
    finite: ClassVar[bool] = True

    def __init__(self, options: Settings, kafka: KafkaSettings):
        self.options = options
        self.kafka = kafka

    def describe(self) -> str:
        """A few words for the job's first line ("topic input-data")."""
        return type(self).__name__

    def check(self) -> None:
        """Fail fast, before any query starts, on what the source can tell without Spark."""

    def read_stream(self, spark: SparkSession) -> DataFrame:
        raise NotImplementedError

    def read_batch(self, spark: SparkSession) -> DataFrame:
        raise NotImplementedError(f"the {type(self).__name__} has no batch reader")


def build_source(section: Mapping[str, Any], kafka: KafkaSettings, prefix: str = "source") -> Source:
    """The source that a config section (``{"type": "kafka", ...}``) describes, its options
    validated by the source's own model.

    >>> build_source({"type": "files", "path": "."}, KafkaSettings()).describe()
    'files in .'
    """
    options = dict(section)
    type_name = options.pop("type", "kafka")
    try:
        source_class = SOURCES.get(str(type_name))
    except UnknownNameError as error:
        raise ConfigError(f"{prefix}.type", str(error)) from None
    return source_class(parse(source_class.Options, options, prefix), kafka)
