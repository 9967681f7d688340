"""What every source is: its options, a check before any query starts, and how it reads.

A source returns raw payloads in ``value`` plus lineage columns of its own (Kafka's topic,
partition, offset, timestamp as ``kafka_timestamp`` and headers); it knows nothing of parsing or
transforms. Each source is one class in one module, registered by type name::

    @register_source("kafka")
    class KafkaSource(Source): ...

Another package adds its own through the entry-point group ``pipeline_lib.sources``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Optional, Tuple, Type

from pyspark.sql import DataFrame, SparkSession

from pipeline_lib.config import Settings, parse
from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.kafka_client import KafkaSettings
from pipeline_lib.registry import Registry, UnknownNameError, check_overrides
from pipeline_lib.reports import PartitionOffsets

SOURCES: Registry[Type["Source"]] = Registry("source", "pipeline_lib.sources")
register_source = SOURCES.register


class Source(ABC):
    """A streaming source: implement :meth:`read_stream`; :meth:`read_batch` reads the same
    data once, for notebooks and backfills; :meth:`check` fails fast before Spark starts.

    An override whose parameters differ from the base's is refused when the class is defined.
    """

    Options: ClassVar[Type[Settings]] = Settings
    # False for a source that never runs dry (synthetic data): it needs a processing-time trigger.
    finite: ClassVar[bool] = True
    # True for a source built with the pipeline's Kafka settings as a second argument.
    uses_kafka: ClassVar[bool] = False

    def __init__(self, options: Settings):
        self.options = options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_overrides(cls, Source)

    def describe(self) -> str:
        """A few words for the job's first line ("topic input-data")."""
        return type(self).__name__

    @property
    def output_columns(self) -> Tuple[str, ...]:
        """Columns of the source's own that the output writes by default, after the record's
        fields (the others go to the quarantine only)."""
        return ()

    def check(self) -> None:
        """Fail fast, before any query starts, on what the source can tell without Spark."""

    def offsets_lost(self, checkpoint: str) -> Tuple[PartitionOffsets, ...]:
        """What the query of ``checkpoint`` was to read next that the source no longer holds
        (deleted by retention while the job was stopped), for the run to skip and count; a
        source that cannot lose data has none. May raise instead, when the user asked that a
        loss stop the job."""
        return ()

    @abstractmethod
    def read_stream(self, spark: SparkSession) -> DataFrame:
        """The source as a streaming DataFrame."""

    def read_batch(self, spark: SparkSession) -> DataFrame:
        raise PipelineError(f"the {type(self).__name__} has no batch reader")


def build_source(section: Mapping[str, Any], kafka: Optional[KafkaSettings] = None, prefix: str = "source") -> Source:
    """The source that a config section (``{"type": "kafka", ...}``) describes, its options
    validated by the source's own model; only a source that ``uses_kafka`` is given ``kafka``.

    >>> build_source({"type": "files", "path": "."}).describe()
    'files in .'
    """
    options = dict(section)
    type_name = options.pop("type", "kafka")
    try:
        source_class = SOURCES.get(str(type_name))
    except UnknownNameError as error:
        raise ConfigError(f"{prefix}.type", str(error)) from error
    parsed = parse(source_class.Options, options, prefix)
    if source_class.uses_kafka:
        return source_class(parsed, kafka or KafkaSettings())  # type: ignore[call-arg]
    return source_class(parsed)
