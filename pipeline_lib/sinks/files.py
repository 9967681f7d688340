"""File sinks: each micro-batch becomes whole files in the folder, visible to any reader only
once complete, written exactly once per batch id.

:meth:`FileSink.write` has Spark write a batch into ``<folder>/_staging/batch-N``;
:meth:`FileSink.commit` lists the files it will publish in ``<folder>/_publishing/N``, then
renames them into the folder as ``batch-<N>-part-<k>.<ext>``; the runner then marks the batch
in the ledger (``_batches/N``). Readers never see a partial file: Spark and Hadoop-style readers
skip ``_``-folders, and a glob of ``*.csv`` does not descend into them. When a crash interrupts
a batch, the restarted query replays it with the same id and rows: the files its list names are
removed and the batch is written again, so every row lands once, for ``spark.read`` and
``pandas`` over a glob alike. No step lists the folder itself, so a batch costs the same among
ten files or a million. A batch without rows publishes no file. The folder may be on any file
system Hadoop knows (local, ``hdfs://``, ``s3a://``).

With ``partition_by``, a batch lands in Hive-style folders, one level a column
(``currency=EUR/batch-<N>-part-<k>.csv``, the column in the folder's name and not in the
files), which Spark, DuckDB (``hive_partitioning``) and pyarrow read back as a column. The files
of one batch are numbered in each folder; ``max_files_per_batch`` bounds how many.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, ClassVar, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from pydantic import PositiveInt, field_validator, model_validator
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipeline_lib.config import comma_separated
from pipeline_lib.sinks.base import Sink, SinkOptions
from pipeline_lib.sinks.folders import Folder
from pipeline_lib.sinks.ledger import MARKS_KEPT

STAGING = "_staging"
PUBLISHING = "_publishing"
ROUTE = "route"
ROUTED = "routed"  # _staging/routed-N: a one-pass write's files, before they are moved
# File systems whose rename moves a name, not the bytes (an object store's copies them).
RENAMING_FILE_SYSTEMS = ("file", "hdfs", "viewfs")
# The low bits of monotonically_increasing_id: the row's number in its task.
_ROW_IN_TASK = (1 << 33) - 1


class FileSinkOptions(SinkOptions):
    path: str
    partition_by: Tuple[str, ...] = ()  # columns, each a level of Hive-style folders: currency=EUR/
    max_files_per_batch: Optional[PositiveInt] = None  # files a batch writes per folder at most; None: one per task

    @field_validator("path")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value:
            raise ValueError("is required for a file sink")
        return value

    @field_validator("partition_by", mode="before")
    @classmethod
    def _comma_separated_partitions(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("partition_by")
    @classmethod
    def _folder_names(cls, names: Tuple[str, ...]) -> Tuple[str, ...]:
        for name in names:
            if not name or name[0] in "_.":
                # Spark's reader takes such folders for its own and skips them: their rows would vanish.
                raise ValueError(f"{name!r} cannot name a folder that readers see: start it with a letter or digit")
        if len(set(names)) < len(names):
            raise ValueError("names a column twice")
        return names

    @model_validator(mode="after")
    def _partitions_written(self) -> "FileSinkOptions":
        if self.columns and self.partition_by:
            unknown = [name for name in self.partition_by if name not in self.columns]
            if unknown:
                written = ", ".join(self.columns)
                raise ValueError(f"partition_by: columns {unknown} are not among the columns written: {written}")
            if set(self.columns) <= set(self.partition_by):
                raise ValueError("partition_by: leaves no column to write in the files")
        return self


def published_names(parts: List[str], batch_id: int, extension: str) -> List[str]:
    """Where each staged file of batch ``batch_id`` is published: in its partition folder, as
    ``batch-<N>-part-<k>``, ``k`` counted in each folder; the extension Spark gave it.

    >>> published_names(["part-0-a-c000.csv", "day=1/part-0-b.c000.csv", "day=1/part-1-c.c000.csv"], 7, "csv")
    ['batch-00000007-part-00000.csv', 'day=1/batch-00000007-part-00000.csv', 'day=1/batch-00000007-part-00001.csv']
    """
    counts: Dict[str, int] = {}
    names = []
    for part in parts:
        folder, _, name = part.rpartition("/")
        index = counts[folder] = counts.get(folder, -1) + 1
        # Spark names a file part-<task>-<uuid>-c000.csv, or part-<task>-<uuid>.c000.csv in a
        # partition folder: the file counter is not part of the extension.
        suffix = re.sub(r"^c\d+\.", "", name.split(".", 1)[1]) if "." in name else extension
        target = f"batch-{batch_id:08d}-part-{index:05d}.{suffix}"
        names.append(f"{folder}/{target}" if folder else target)
    return names


class Line(NamedTuple):
    """A row as one line of a sink's files, and the header that starts each file (if any)."""

    text: Column
    header: Optional[str] = None


class FileSink(Sink):
    """Base of the csv, json and parquet sinks: a subclass names Spark's format and options."""

    Options = FileSinkOptions
    options: FileSinkOptions
    writer_options: ClassVar[Dict[str, str]] = {}
    observes_writes = True

    @property
    def location(self) -> str:
        return self.options.path

    def prepare(self, df: DataFrame) -> DataFrame:
        """The rows as this format should store them (CSV: numbers as plain decimals)."""
        return df

    def line(self, columns: Mapping[str, Column], schema: StructType) -> Optional[Line]:
        """A row of ``schema`` (its values: ``columns``, by name) as the line this sink's files
        hold it in, for :func:`stage_in_one_pass`; None when the files are not lines of text or
        their layout takes Spark's own writer (partition folders)."""
        return None

    def describe(self) -> str:
        partitions = self.options.partition_by
        return super().describe() + (f" partitioned by {', '.join(partitions)}" if partitions else "")

    def _clear(self, spark: SparkSession, batch_id: int) -> Folder:
        """The sink's folder, without what an earlier attempt at batch ``batch_id`` left."""
        folder = Folder(spark, self.location)
        listed = f"{PUBLISHING}/{batch_id}"
        # An interrupted attempt published these already. Removed before the batch is staged
        # again, so that a reader globbing into _staging never sees a row in both places.
        if folder.exists(listed):
            for name in folder.read_lines(listed):
                folder.delete(name)
        folder.delete(f"{STAGING}/batch-{batch_id}")
        folder.delete(f"{STAGING}/{ROUTED}-{batch_id}")  # left by a one-pass attempt
        return folder

    def write(self, rows: DataFrame, batch_id: int) -> None:
        folder = self._clear(rows.sparkSession, batch_id)
        staging = f"{STAGING}/batch-{batch_id}"
        prepared = self.prepare(rows)
        if self.options.max_files_per_batch:
            # Each task writes a file per folder: fewer tasks, fewer files (no shuffle).
            prepared = prepared.coalesce(self.options.max_files_per_batch)
        # The commit lists the staged part files itself: Hadoop's _SUCCESS marker would be one
        # more file written and deleted per batch (about 18 ms of a small batch's write).
        writer = (
            prepared.write.format(self.format)
            .options(**self.writer_options)
            .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        )
        if self.options.partition_by:
            writer = writer.partitionBy(*self.options.partition_by)
        writer.save(folder.path(staging))

    def commit(self, spark: SparkSession, batch_id: int, row_count: int) -> None:
        folder = Folder(spark, self.location)
        listed = f"{PUBLISHING}/{batch_id}"
        staging = f"{STAGING}/batch-{batch_id}"
        # An empty batch leaves an empty file or a bare header: publish nothing.
        parts = folder.files(staging, len(self.options.partition_by)) if row_count else []
        targets = published_names(parts, batch_id, self.format)
        folder.write_lines(listed, targets)
        for partition in sorted({target.rpartition("/")[0] for target in targets} - {""}):
            folder.make_folders(partition)
        for part, target in zip(parts, targets, strict=True):
            folder.rename(f"{staging}/{part}", target)
        folder.delete(staging)
        folder.delete(f"{PUBLISHING}/{batch_id - MARKS_KEPT}")

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.read.format(self.format).options(**self.writer_options).load(self.location)


class Route(NamedTuple):
    """Where :func:`stage_in_one_pass` sends a row: to ``sink``, as ``line``, when ``when``
    holds (true or false, never null: a row no route takes is not written)."""

    sink: FileSink
    when: Column
    line: Line


def can_stage_together(spark: SparkSession, sinks: Sequence[FileSink]) -> bool:
    """Whether one write can stage a batch of every sink of ``sinks`` (once each has a
    :meth:`FileSink.line`): their files split alike (``max_files_per_batch``), their folders on
    one file system that renames without copying (staged files are moved into each), and no file
    rolled over mid-task by ``spark.sql.files.maxRecordsPerFile`` (each file's header is written
    by its task's first row)."""
    systems = {Folder(spark, sink.location).file_system() for sink in sinks}
    splits = {sink.options.max_files_per_batch for sink in sinks}
    rolled = int(spark.conf.get("spark.sql.files.maxRecordsPerFile") or 0) > 0
    renaming = all(system.split(":", 1)[0] in RENAMING_FILE_SYSTEMS for system in systems)
    return len(systems) == 1 and renaming and len(splits) == 1 and not rolled


class RoutedLines:
    """The routes of a one-pass write, and what it writes of a row: the number of the first
    route whose condition holds, and that route's line. Made once for rows of one schema, used
    for every batch of them (making these columns costs more than a small batch's write)."""

    def __init__(self, routes: Sequence[Route]):
        self.routes = tuple(routes)
        first = self.routes[0]
        name, text = F.when(first.when, F.lit("0")), F.when(first.when, _headed(first))
        for index, route in enumerate(self.routes[1:], start=1):
            name, text = name.when(route.when, F.lit(str(index))), text.when(route.when, _headed(route))
        self.columns = (name.alias(ROUTE), text.alias("value"))


def stage_in_one_pass(rows: DataFrame, lines: RoutedLines, batch_id: int) -> None:
    """Stage batch ``batch_id`` of every route's sink in one pass over ``rows``: each row, as
    the line of the first route whose condition holds, in a file of that sink's staging, as its
    own :meth:`FileSink.write` would have left it. Each sink's :meth:`FileSink.commit` then
    publishes its files. The routes' sinks must pass :func:`can_stage_together`.

    A batch read once for two sinks (the output and the quarantine) costs about what the output
    alone does; writing each from the batch kept in memory costs a fifth more.
    """
    spark = rows.sparkSession
    routes = lines.routes
    folders = [route.sink._clear(spark, batch_id) for route in routes]  # and the routed files of an attempt
    routed = f"{STAGING}/{ROUTED}-{batch_id}"
    most = routes[0].sink.options.max_files_per_batch
    if most:
        rows = rows.coalesce(most)
    # Unsorted, a task writes its rows to each route's file in their order, so the first row
    # of a route in a task, which carries the header, starts its file. Spark sorts them by route
    # first when the planned write is on; and a task whose open writers reach the most allowed
    # sorts the rest of its rows (buffering them), so one more than the routes is allowed.
    unsorted = {
        "spark.sql.optimizer.plannedWrite.enabled": "false",
        "spark.sql.maxConcurrentOutputFileWriters": str(len(routes) + 1),
    }
    with _session_settings(spark, unsorted):
        (
            rows.select(*lines.columns)
            .write.partitionBy(ROUTE)
            .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
            .text(folders[0].path(routed))
        )
    staging = f"{STAGING}/batch-{batch_id}"
    for index, (route, folder) in enumerate(zip(routes, folders, strict=True)):
        folder.make_folders(staging)
        route_folder = f"{routed}/{ROUTE}={index}"
        for part in folders[0].files(route_folder, 0):  # part-<task>-<uuid>.c000.txt
            staged = f"{staging}/{part.removesuffix('txt')}{route.sink.format}"
            folders[0].move(f"{route_folder}/{part}", folder, staged)
    folders[0].delete(routed)


def _headed(route: Route) -> Column:
    """The route's line, the header and a line break before it on a task's first row of the route."""
    text, header = route.line
    if header is None:
        return text
    # A row counter inside the route's own branch counts that route's rows alone: Spark
    # evaluates a CASE branch only for the rows that reach it.
    number = F.when(route.when, F.monotonically_increasing_id()).bitwiseAND(F.lit(_ROW_IN_TASK))
    return F.when(number == 0, F.concat(F.lit(header + "\n"), text)).otherwise(text)


@contextmanager
def _session_settings(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    before: Dict[str, Optional[str]] = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, earlier in before.items():
            if earlier is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, earlier)
