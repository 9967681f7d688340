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
"""

from __future__ import annotations

from typing import ClassVar, Dict

from pydantic import field_validator
from pyspark.sql import DataFrame, SparkSession

from pipeline_lib.sinks.base import Sink, SinkOptions
from pipeline_lib.sinks.ledger import MARKS_KEPT, HadoopFolder

STAGING = "_staging"
PUBLISHING = "_publishing"


class FileSinkOptions(SinkOptions):
    path: str

    @field_validator("path")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value:
            raise ValueError("is required for a file sink")
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

    def prepare(self, df: DataFrame) -> DataFrame:
        """The rows as this format should store them (CSV: numbers as plain decimals)."""
        return df

    def write(self, rows: DataFrame, batch_id: int) -> None:
        folder = HadoopFolder(rows.sparkSession, self.location)
        staging = f"{STAGING}/batch-{batch_id}"
        folder.delete(staging)
        self.prepare(rows).write.format(self.format).options(**self.writer_options).save(folder.path(staging))

    def commit(self, spark: SparkSession, batch_id: int, row_count: int) -> None:
        folder = HadoopFolder(spark, self.location)
        listed = f"{PUBLISHING}/{batch_id}"
        if folder.exists(listed):  # an interrupted attempt published these already
            for name in folder.read_lines(listed):
                folder.delete(name)
        staging = f"{STAGING}/batch-{batch_id}"
        # An empty batch leaves an empty file or a bare header: publish nothing.
        parts = sorted(folder.names(f"{staging}/part-*")) if row_count else []
        targets = [
            f"batch-{batch_id:08d}-part-{index:05d}.{name.split('.', 1)[1] if '.' in name else self.format}"
            for index, name in enumerate(parts)
        ]
        folder.write_lines(listed, targets)
        for part, target in zip(parts, targets, strict=True):
            folder.rename(f"{staging}/{part}", target)
        folder.delete(staging)
        folder.delete(f"{PUBLISHING}/{batch_id - MARKS_KEPT}")

    def read(self, spark: SparkSession) -> DataFrame:
        return spark.read.format(self.format).options(**self.writer_options).load(self.location)
