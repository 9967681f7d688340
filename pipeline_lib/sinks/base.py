"""What every sink is: its options, the folder it owns, and an idempotent write of one batch.

The pipeline runs one streaming query and hands each micro-batch to every sink with its batch
id. A batch that Spark replays after a crash arrives with the same id and the same rows, so a
sink that remembers which batches it wrote (:meth:`Sink.written`) skips them, and one that was
cut short replaces what it had begun. Sinks know nothing of transforms. Each sink is one class
in one module, registered by format name::

    @register_sink("csv")
    class CsvSink(FileSink): ...

Another package adds its own through the entry-point group ``pipeline_lib.sinks``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple, Type

from pydantic import field_validator
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from pipeline_lib.config import ConfigError, Settings, parse
from pipeline_lib.kafka_client import KafkaSettings
from pipeline_lib.registry import Registry, UnknownNameError

SINKS: Registry[Type["Sink"]] = Registry("sink", "pipeline_lib.sinks")


def register_sink(format_name: str):
    """Class decorator: register a :class:`Sink` subclass as ``format_name``."""

    def decorator(sink_class: Type["Sink"]) -> Type["Sink"]:
        sink_class.format = format_name
        return SINKS.register(format_name)(sink_class)

    return decorator

OWNER_FILE = "pipeline-owner.json"

# Called after a write, it says how many rows went through (from Spark's observed metrics).
RowCount = Callable[[], int]


class SinkOptions(Settings):
    columns: Optional[Tuple[str, ...]] = None  # the columns to write, in order; None: all

    @field_validator("columns", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


class Sink:
    """A sink of micro-batches. Subclasses set ``Options`` and implement :meth:`write`."""

    Options: ClassVar[Type[SinkOptions]] = SinkOptions
    format: ClassVar[str] = ""  # the registered name, set by register_sink
    # True when the sink's write reports Spark's observed metrics (a plain DataFrameWriter to
    # files does): rows can then be counted on their way through the write, at no extra pass.
    # Other write paths (Spark's Kafka writer, for one) never report them.
    observes_writes: ClassVar[bool] = False

    def __init__(self, options: SinkOptions, kafka: KafkaSettings):
        self.options = options
        self.kafka = kafka

    @property
    def location(self) -> Optional[str]:
        """The folder this sink owns, if any (bound to the checkpoint that writes it)."""
        return None

    def describe(self) -> str:
        return self.format if self.location is None else f"{self.format} to {self.location}"

    def has_history(self) -> bool:
        """Whether the sink's folder holds batches written by some checkpoint."""
        return False

    def written(self, spark: SparkSession, batch_id: int) -> bool:
        """Whether batch ``batch_id`` is already written in full (False: write it)."""
        return False

    def write_batch(self, df: DataFrame, batch_id: int, rows: Optional[RowCount] = None) -> int:
        """Write micro-batch ``batch_id`` and return how many rows it held; a batch without
        rows is still marked as done. ``rows``, when the caller counts the rows on their way
        through the write (as the pipeline does), saves the sink a count of its own."""
        if self.options.columns:
            missing = [name for name in self.options.columns if name not in df.columns]
            if missing:
                raise ValueError(f"columns {missing} are not in the rows to write; they have {df.columns}")
            df = df.select(*self.options.columns)
        if rows is None and self.observes_writes:
            counted = Observation(f"{self.format}-rows-{batch_id}")
            df = df.observe(counted, F.count(F.lit(1)).alias("rows"))
            rows = lambda: int(counted.get["rows"])  # noqa: E731
        elif rows is None:
            count = df.count()
            rows = lambda: count  # noqa: E731
        return self.write(df, batch_id, rows)

    def write(self, df: DataFrame, batch_id: int, rows: RowCount) -> int:
        """Write ``df``; ``rows()``, called once the rows went through, says how many."""
        raise NotImplementedError

    def skip_batch(self, spark: SparkSession, batch_id: int) -> None:
        """Record batch ``batch_id`` as written with no rows, without running a Spark job."""

    def read(self, spark: SparkSession) -> DataFrame:
        """What the sink holds, as a batch DataFrame (for ``--show`` and notebooks)."""
        raise NotImplementedError(f"the {self.format} sink cannot be read back")


def build_sink(
    section: Mapping[str, Any], kafka: KafkaSettings, prefix: str, defaults: Optional[Mapping[str, Any]] = None
) -> Sink:
    """The sink that a config section (``{"format": "csv", "path": "out"}``) describes. Of
    ``defaults``, the format applies when the section names none, and each other setting when
    the sink has such an option and the section does not set it.

    >>> build_sink({"format": "csv", "path": "out"}, KafkaSettings(), "output").describe()
    'csv to out'
    >>> build_sink({"format": "memory", "name": "rows"}, KafkaSettings(), "output", {"format": "csv", "path": "output"}).describe()
    'memory table rows'
    """
    defaults = dict(defaults or {})
    options = dict(section)
    format_name = options.pop("format", defaults.pop("format", None))
    try:
        sink_class = SINKS.get(str(format_name))
    except UnknownNameError as error:
        raise ConfigError(f"{prefix}.format", str(error)) from None
    known = {key: value for key, value in defaults.items() if key in sink_class.Options.model_fields}
    return sink_class(parse(sink_class.Options, {**known, **options}, prefix), kafka)


_TRIGGER = re.compile(r"^(available-now|once|processing-time=(\d+(?:\.\d+)?)\s*(ms|s|m|h))$")
_DURATION_WORDS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}
TRIGGER_HELP = "allowed: available-now, once, processing-time=<number><ms|s|m|h>"


def spark_trigger(trigger: str) -> Dict[str, Any]:
    """Keyword arguments for ``DataStreamWriter.trigger`` from a trigger string.

    >>> spark_trigger("processing-time=5s")
    {'processingTime': '5 seconds'}
    """
    match = _TRIGGER.match(trigger)
    if match is None:
        raise ConfigError("trigger", f"unknown trigger {trigger!r}; {TRIGGER_HELP}")
    if trigger == "available-now":
        return {"availableNow": True}
    if trigger == "once":
        return {"once": True}
    return {"processingTime": f"{match.group(2)} {_DURATION_WORDS[match.group(3)]}"}


class CheckpointMismatchError(RuntimeError):
    """A checkpoint and output folders that were not written together."""


def claim_checkpoint(checkpoint: str, sinks: Mapping[str, Sink]) -> None:
    """Bind ``checkpoint`` to the folders of ``sinks``, refusing a pair not written together.

    The query trusts its checkpoint: with an output deleted it would go on from the
    checkpoint's offsets and the old rows would be lost silently; with a new checkpoint on an
    old output it would number batches from 0 again and skip those already marked. Both are
    refused, as is a checkpoint recorded for other folders. Only local folders are inspected.
    """
    folders = {name: os.path.abspath(sink.location) for name, sink in sinks.items() if sink.location}
    if any("://" in path for path in [checkpoint, *folders.values()]):
        return
    owner_path = os.path.join(checkpoint, OWNER_FILE)
    # A batch: offsets log, each sink's files and mark, commit log. A crash can stop between
    # any two; only a state that no crash leaves is refused.
    planned = _has_entries(os.path.join(checkpoint, "offsets"))
    committed = _has_entries(os.path.join(checkpoint, "commits"))
    # A run that stopped before planning a batch (a missing topic, a mistyped folder) wrote
    # nothing: its binding is replaced rather than held against the corrected run.
    if planned and os.path.exists(owner_path):
        with open(owner_path, encoding="utf-8") as handle:
            owner = json.load(handle).get("sinks", {})
        for name, folder in folders.items():
            if owner.get(name, folder) != folder:
                raise CheckpointMismatchError(
                    f"checkpoint {checkpoint} belongs to the pipeline writing {name} to {owner[name]}, "
                    f"not {folder}; use that folder or a new checkpoint"
                )
    for name, folder in folders.items():
        if committed and not os.path.isdir(folder):
            raise CheckpointMismatchError(
                f"{name} folder {folder} is gone but checkpoint {checkpoint} has committed batches: "
                "restore it, or start over with a new checkpoint and an empty folder"
            )
        if not planned and sinks[name].has_history():
            raise CheckpointMismatchError(
                f"{name} folder {folder} already holds written batches but checkpoint {checkpoint} is new: "
                "give the checkpoint that wrote them, or a new folder"
            )
    os.makedirs(checkpoint, exist_ok=True)
    with open(owner_path, "w", encoding="utf-8") as handle:
        json.dump({"sinks": folders}, handle)


def _has_entries(folder: str) -> bool:
    return os.path.isdir(folder) and any(not name.startswith(".") for name in os.listdir(folder))
