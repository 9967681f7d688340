"""What every sink is: its options, and the write of one micro-batch.

The runner hands each micro-batch to each sink with its batch id: :meth:`Sink.write` sends the
rows or stages them where no reader sees them, then :meth:`Sink.commit` makes the batch visible.
Which batches a sink has written is kept by the runner in the sink's ledger
(``pipeline_lib.sinks.ledger``), not by the sink: a batch Spark replays after a crash arrives
with the same id and rows, and is skipped when the ledger has it, or written again, in which
case the sink replaces whatever the interrupted attempt left. Sinks know nothing of transforms.
Each sink is one class in one module, registered by format name::

    @register_sink("csv")
    class CsvSink(FileSink): ...

Another package adds its own through the entry-point group ``pipeline_lib.sinks``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Mapping, Optional, Tuple, Type

from pydantic import field_validator
from pyspark.sql import DataFrame, SparkSession

from pipeline_lib.config import Settings, comma_separated, parse
from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.kafka_client import KafkaSettings
from pipeline_lib.registry import Registry, UnknownNameError, check_overrides

SINKS: Registry[Type["Sink"]] = Registry("sink", "pipeline_lib.sinks")


def register_sink(format_name: str) -> Callable[[Type["Sink"]], Type["Sink"]]:
    """Class decorator: register a :class:`Sink` subclass as ``format_name``."""

    def decorator(sink_class: Type["Sink"]) -> Type["Sink"]:
        sink_class.format = format_name
        return SINKS.register(format_name)(sink_class)

    return decorator


class SinkOptions(Settings):
    columns: Optional[Tuple[str, ...]] = None  # the columns to write, in order; None: all

    @field_validator("columns", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)


class Sink(ABC):
    """A sink of micro-batches: implement :meth:`write`; override :meth:`commit` when a batch
    becomes visible in a step of its own, ``location`` when the sink owns a folder.

    An override whose parameters differ from the base's is refused when the class is defined.
    """

    Options: ClassVar[Type[SinkOptions]] = SinkOptions
    format: ClassVar[str] = ""  # the registered name, set by register_sink
    # True when the write goes through a DataFrameWriter that reports Spark's observed metrics
    # (a file format does): the runner then counts rows on their way through the write, at no
    # extra pass. Other write paths (Spark's Kafka writer, a collect) never report them.
    observes_writes: ClassVar[bool] = False
    # True for a sink built with the pipeline's Kafka settings as a second argument.
    uses_kafka: ClassVar[bool] = False

    def __init__(self, options: SinkOptions):
        self.options = options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_overrides(cls, Sink)

    @abstractmethod
    def write(self, rows: DataFrame, batch_id: int) -> None:
        """Send or stage the rows of batch ``batch_id``. Called again with the same id and
        rows after a crash: replace what an earlier attempt left."""

    def commit(self, spark: SparkSession, batch_id: int, row_count: int) -> None:
        """Make batch ``batch_id`` visible to readers; ``row_count`` rows were written (0: the
        batch had none for this sink, and :meth:`write` was not called)."""

    @property
    def location(self) -> Optional[str]:
        """The folder this sink owns, if any (bound to the checkpoint that writes it)."""
        return None

    def describe(self) -> str:
        return self.format if self.location is None else f"{self.format} to {self.location}"

    def read(self, spark: SparkSession) -> DataFrame:
        """What the sink holds, as a batch DataFrame (for ``--show`` and notebooks)."""
        raise PipelineError(f"the {self.format} sink cannot be read back")


def build_sink(
    section: Mapping[str, Any],
    prefix: str,
    defaults: Optional[Mapping[str, Any]] = None,
    kafka: Optional[KafkaSettings] = None,
) -> Sink:
    """The sink that a config section (``{"format": "csv", "path": "out"}``) describes. Of
    ``defaults``, the format applies when the section names none, and each other setting when
    the sink has such an option and the section does not set it. Only a sink that ``uses_kafka``
    is given ``kafka``.

    >>> build_sink({"format": "csv", "path": "out"}, "output").describe()
    'csv to out'
    >>> build_sink({"format": "memory", "name": "rows"}, "output", {"format": "csv", "path": "output"}).describe()
    'memory table rows'
    """
    defaults = dict(defaults or {})
    options = dict(section)
    format_name = options.pop("format", defaults.pop("format", None))
    try:
        sink_class = SINKS.get(str(format_name))
    except UnknownNameError as error:
        raise ConfigError(f"{prefix}.format", str(error)) from error
    known = {key: value for key, value in defaults.items() if key in sink_class.Options.model_fields}
    parsed = parse(sink_class.Options, {**known, **options}, prefix)
    if sink_class.uses_kafka:
        return sink_class(parsed, kafka or KafkaSettings())  # type: ignore[call-arg]
    return sink_class(parsed)
