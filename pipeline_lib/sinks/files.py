"""File sinks: each micro-batch becomes whole files in the folder, visible to any reader only
once complete, written exactly once per batch id.

Spark writes a batch into ``<folder>/_staging/batch-N``; the files are then renamed into the
folder as ``batch-<N>-part-<k>.<ext>`` and the batch is marked in ``<folder>/_batches/N``.
Readers never see a partial file: Spark and Hadoop-style readers skip ``_``-folders, and a glob
of ``*.csv`` does not descend into them. When a crash interrupts a batch, the restarted query
replays it with the same id and rows: files of that id already renamed are removed and the batch
is written again, so every row lands once, for ``spark.read`` and ``pandas`` over a glob alike.
A batch without rows publishes no file. The folder may be on any file system Hadoop knows
(local, ``hdfs://``, ``s3a://``): every step goes through Hadoop's FileSystem API.
"""

from __future__ import annotations

import os
from typing import ClassVar, Dict, List

from pydantic import field_validator
from pyspark.sql import DataFrame, SparkSession

from pipeline_lib.sinks.base import RowCount, Sink, SinkOptions

MARKS = "_batches"
STAGING = "_staging"
MARKS_KEPT = 100  # the newest marks are enough: a replay concerns the last batch only


class FileSinkOptions(SinkOptions):
    path: str

    @field_validator("path")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value:
            raise ValueError("is required for a file sink")
        if os.path.isfile(value):
            raise ValueError(f"{value} is a file, not a folder")
        return value


class FileSink(Sink):
    """Base of the csv, json and parquet sinks: a subclass names Spark's format and options."""

    Options = FileSinkOptions
    options: FileSinkOptions
    writer_options: ClassVar[Dict[str, str]] = {}
    observes_writes = True

    @property
    def location(self) -> str:
        return self.options.path

    def has_history(self) -> bool:
        return any(
            os.path.isdir(folder) and any(not name.startswith(".") for name in os.listdir(folder))
            for folder in (os.path.join(self.location, MARKS), os.path.join(self.location, "_spark_metadata"))
        )

    def prepare(self, df: DataFrame) -> DataFrame:
        """The rows as this format should store them (CSV: numbers as plain decimals)."""
        return df

    def written(self, spark: SparkSession, batch_id: int) -> bool:
        folder = _Folder(spark, self.location)
        return folder.exists(f"{MARKS}/{batch_id}")

    def write(self, df: DataFrame, batch_id: int, rows: RowCount) -> int:
        folder = _Folder(df.sparkSession, self.location)
        prefix = f"batch-{batch_id:08d}-"
        folder.delete_matching(f"{prefix}*")  # what an interrupted attempt had renamed already
        staging = f"{STAGING}/batch-{batch_id}"
        folder.delete(staging)
        self.prepare(df).write.format(self.format).options(**self.writer_options).save(folder.path(staging))
        count = rows()
        if count:  # an empty batch leaves an empty file or a bare header: publish nothing
            for index, name in enumerate(sorted(folder.names(f"{staging}/part-*"))):
                extension = name.split(".", 1)[1] if "." in name else self.format
                folder.rename(f"{staging}/{name}", f"{prefix}part-{index:05d}.{extension}")
        folder.delete(staging)
        self._mark(folder, batch_id)
        return count

    def skip_batch(self, spark: SparkSession, batch_id: int) -> None:
        folder = _Folder(spark, self.location)
        folder.delete_matching(f"batch-{batch_id:08d}-*")
        self._mark(folder, batch_id)

    @staticmethod
    def _mark(folder: "_Folder", batch_id: int) -> None:
        folder.touch(f"{MARKS}/{batch_id}")
        for old in folder.names(f"{MARKS}/*"):
            if old.isdigit() and int(old) <= batch_id - MARKS_KEPT:
                folder.delete(f"{MARKS}/{old}")

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.read.format(self.format).options(**self.writer_options).load(self.location)


class _Folder:
    """A folder through Hadoop's FileSystem API (the JVM's), names relative to it."""

    def __init__(self, spark: SparkSession, location: str):
        jvm = spark.sparkContext._jvm
        self._path_class = jvm.org.apache.hadoop.fs.Path
        self.root = location if "://" in location else os.path.abspath(location)
        self._fs = self._path_class(self.root).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _hadoop(self, name: str):
        return self._path_class(self.path(name))

    def exists(self, name: str) -> bool:
        return bool(self._fs.exists(self._hadoop(name)))

    def names(self, pattern: str) -> List[str]:
        statuses = self._fs.globStatus(self._hadoop(pattern)) or []
        return [status.getPath().getName() for status in statuses]

    def delete(self, name: str) -> None:
        self._fs.delete(self._hadoop(name), True)

    def delete_matching(self, pattern: str) -> None:
        for name in self.names(pattern):
            self.delete(name)

    def rename(self, source: str, target: str) -> None:
        if not self._fs.rename(self._hadoop(source), self._hadoop(target)):
            raise OSError(f"could not rename {self.path(source)} to {self.path(target)}")

    def touch(self, name: str) -> None:
        self._fs.create(self._hadoop(name), True).close()
