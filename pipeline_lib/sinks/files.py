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
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from pydantic import PositiveInt, field_validator, model_validator
from pyspark.sql import DataFrame, SparkSession

from pipeline_lib.config import comma_separated
from pipeline_lib.sinks.base import Sink, SinkOptions
from pipeline_lib.sinks.ledger import MARKS_KEPT, HadoopFolder

STAGING = "_staging"
PUBLISHING = "_publishing"


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


class _Folder(HadoopFolder):
    """The sink's folder, with what a partitioned batch needs besides names in one folder."""

    def files(self, folder: str, depth: int) -> List[str]:
        """The files Spark wrote in ``folder`` (``part-*``) under ``depth`` levels of partition
        folders (``key=value``), as paths relative to ``folder``, sorted."""
        pattern = f"{folder}/" + "*=*/" * depth + "part-*"
        found = []
        for status in self._fs.globStatus(self._hadoop(pattern)) or []:
            path, names = status.getPath(), []
            for _ in range(depth + 1):
                names.append(path.getName())
                path = path.getParent()
            found.append("/".join(reversed(names)))
        return sorted(found)

    def make_folders(self, name: str) -> None:
        self._fs.mkdirs(self._hadoop(name))


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

    def describe(self) -> str:
        partitions = self.options.partition_by
        return super().describe() + (f" partitioned by {', '.join(partitions)}" if partitions else "")

    def write(self, rows: DataFrame, batch_id: int) -> None:
        folder = _Folder(rows.sparkSession, self.location)
        listed = f"{PUBLISHING}/{batch_id}"
        # An interrupted attempt published these already. Removed before the batch is staged
        # again, so that a reader globbing into _staging never sees a row in both places.
        if folder.exists(listed):
            for name in folder.read_lines(listed):
                folder.delete(name)
        staging = f"{STAGING}/batch-{batch_id}"
        folder.delete(staging)
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
        folder = _Folder(spark, self.location)
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
